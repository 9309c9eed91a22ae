"""The GridFS store's records (accounts): the collection ``<bucket>.records``.

One document per key, ``{"_id": key, "doc": {...}}``; a create is an insert,
so the unique ``_id`` lets one of two creators win.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from fileserver.records import RecordExists, Records, check_key


class MongoRecords(Records):
    def __init__(self, collection: Collection, boundary: AbstractContextManager,
                 closer: Callable[[], None] | None = None):
        self._coll, self._boundary, self._closer = collection, boundary, closer

    def get(self, key):
        with self._boundary:
            found = self._coll.find_one({"_id": check_key(key)})
        return found["doc"] if found else None

    def put(self, key, doc, *, create=False):
        with self._boundary:
            if create:
                try:
                    self._coll.insert_one({"_id": check_key(key), "doc": doc})
                except DuplicateKeyError:
                    raise RecordExists(f"{key} exists") from None
            else:
                self._coll.replace_one({"_id": check_key(key)}, {"doc": doc}, upsert=True)

    def delete(self, key):
        with self._boundary:
            return self._coll.delete_one({"_id": check_key(key)}).deleted_count > 0

    def list(self, prefix):
        with self._boundary:
            found = self._coll.find({"_id": {"$gte": prefix, "$lt": prefix + "\x7f"}}).sort("_id", 1)
            return [(doc["_id"], doc["doc"]) for doc in found]

    def close(self):
        if self._closer is not None:
            self._closer()
