"""The GridFS store's documents: one MongoDB collection per collection, with indexes.

Collection ``c`` is ``<bucket>.docs.<c>`` (``fs.docs.tiles`` by default), next
to the bucket's ``.files`` and ``.chunks``, so several file systems in one
database keep separate documents. One MongoDB document each::

    {"_id": "<id>", "v": 3, "b": {...body...}, "x": 1.7e9}

``v`` is the version: a replace is one ``replace_one({_id, v})`` (the match
count says who won), a create an insert (the unique ``_id`` refuses the
second creator). ``x``, the expiry, only where one was given. Indexes:
``b.<field>`` per declared field (``find`` is ONE ``$in`` query on it) and
``x`` (for ``expire``), made by ``declare``, so at startup and by
``init-db``. Writes are journaled like the store's own (``j``), so an
acknowledged write survives the database being killed.

Upgrading from the first layout: ``<bucket>.records`` (accounts, ``{_id:
key, doc}``) and ``<bucket>.tiles`` (the mosaic's tiles) are copied,
create-only, into the collections ``accounts`` and ``tiles`` when those are
first declared; the old collection is dropped once all of it is copied.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Callable

import pymongo
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

from fileserver.documents import Doc, DocumentExists, Documents, VersionConflict

log = logging.getLogger(__name__)

#: collection -> (old collection under the bucket, old document -> body)
LEGACY = {
    "accounts": ("records", lambda doc: dict(doc.get("doc") or {})),
    "tiles": ("tiles", lambda doc: {k: v for k, v in doc.items() if k != "_id"}),
}


def _doc(found: dict) -> Doc:
    return Doc(found["_id"], str(found["v"]), found["b"], found.get("x"))


def _version(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return -1


class MongoDocuments(Documents):
    """pymongo is thread-safe; errors go through the store's boundary."""

    def __init__(self, database: Database, bucket: str, write_concern: WriteConcern,
                 boundary: AbstractContextManager, closer: Callable[[], None] | None = None,
                 location: str = ""):
        super().__init__()
        self.location = location
        self._database, self._bucket, self._concern = database, bucket, write_concern
        self._boundary, self._closer = boundary, closer

    def _coll(self, spec) -> Collection:
        return self._database.get_collection(f"{self._bucket}.docs.{spec.name}",
                                             write_concern=self._concern)

    def _declare(self, spec):
        coll = self._coll(spec)
        wanted = [[(f"b.{field}", pymongo.ASCENDING)] for field in spec.indexed]
        wanted.append([("x", pymongo.ASCENDING)])
        with self._boundary:
            existing = [list(index["key"].items()) for index in coll.list_indexes()]
            for keys in wanted:
                if keys not in existing:
                    coll.create_index(keys)
            if spec.name in LEGACY:
                self._upgrade(spec, *LEGACY[spec.name])

    def _get(self, spec, doc_id):
        with self._boundary:
            found = self._coll(spec).find_one({"_id": doc_id})
        return _doc(found) if found else None

    def _stored(self, version: int, body: dict, expires: float | None) -> dict:
        stored = {"v": version, "b": body}
        if expires is not None:
            stored["x"] = float(expires)
        return stored

    def _create(self, spec, doc_id, body, expires):
        with self._boundary:
            try:
                self._coll(spec).insert_one({"_id": doc_id, **self._stored(1, body, expires)})
            except DuplicateKeyError:
                raise DocumentExists(f"{spec.name}/{doc_id} exists already.") from None
        return Doc(doc_id, "1", body, expires)

    def _replace(self, spec, doc_id, body, version, expires):
        number = _version(version)
        with self._boundary:
            matched = self._coll(spec).replace_one(
                {"_id": doc_id, "v": number},
                self._stored(number + 1, body, expires)).matched_count
        if matched != 1:
            raise VersionConflict(f"{spec.name}/{doc_id} changed since version {version}.")
        return Doc(doc_id, str(number + 1), body, expires)

    def _delete(self, spec, doc_id, version):
        query = {"_id": doc_id} if version is None else {"_id": doc_id, "v": _version(version)}
        with self._boundary:
            if self._coll(spec).delete_one(query).deleted_count == 1:
                return True
            if version is None or self._coll(spec).find_one({"_id": doc_id}, {"_id": 1}) is None:
                return False
        raise VersionConflict(f"{spec.name}/{doc_id} changed since version {version}.")

    def _find(self, spec, field_name, values):
        # One query on the field's index; the cursor's getMores (if the answer
        # outgrows a first batch) are part of it, not further queries.
        with self._boundary:
            return [_doc(found) for found in self._coll(spec).find(
                {f"b.{field_name}": {"$in": values}}, batch_size=10_000)]

    def _page(self, spec, after, limit):
        query = {"_id": {"$gt": after}} if after is not None else {}
        with self._boundary:
            return [_doc(found) for found in self._coll(spec).find(
                query, sort=[("_id", pymongo.ASCENDING)], limit=limit, batch_size=limit)]

    def _count(self, spec):
        # Exact (an estimate from collection metadata can drift after an unclean stop).
        with self._boundary:
            return self._coll(spec).count_documents({})

    def _expire(self, spec, now):
        with self._boundary:
            return self._coll(spec).delete_many({"x": {"$lte": now}}).deleted_count

    def _upgrade(self, spec, old_name: str, to_body) -> None:
        """Copy a collection of the first layout into this one, then drop it."""
        old = self._database[f"{self._bucket}.{old_name}"]
        if old.name not in self._database.list_collection_names():
            return
        kept = 0
        for found in old.find(sort=[("_id", pymongo.ASCENDING)]):
            try:
                self._create(spec, found["_id"], to_body(found), None)
            except DocumentExists:
                pass  # copied by an earlier, interrupted upgrade
            except ValueError as exc:
                kept += 1
                log.warning("gridfs: could not upgrade %s %r: %s", old.name, found["_id"], exc)
        if kept == 0:
            old.drop()
            log.info("gridfs: upgraded %s into the collection %s", old.name, spec.name)

    def close(self):
        if self._closer is not None:
            self._closer()
