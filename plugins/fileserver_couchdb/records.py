"""The CouchDB store's records (accounts): documents ``r:<key>`` in the files' database.

``r:`` sorts outside the ``f:`` (files), ``s:`` (staging) and ``t:`` (tiles)
ranges, and ``validate_doc_update`` checks ``f:`` documents only. A create
is a save without ``_rev``, so of two creators CouchDB lets one win (409
for the other); an update re-reads the ``_rev`` on conflict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import couchdb.http as couch_http

from fileserver.records import RecordExists, Records, check_key

if TYPE_CHECKING:
    from fileserver_couchdb.files import CouchDBStore

PREFIX = "r:"


class CouchRecords(Records):
    def __init__(self, store: "CouchDBStore", *, owns_store: bool = False):
        self._store, self._owns = store, owns_store

    def _doc(self, key: str) -> dict | None:
        return self._store._db.get(PREFIX + check_key(key))

    def get(self, key):
        with self._store._boundary():
            doc = self._doc(key)
        return {k: v for k, v in doc.items() if not k.startswith("_")} if doc else None

    def put(self, key, doc, *, create=False):
        with self._store._boundary():
            for _ in range(20):
                new = {"_id": PREFIX + check_key(key), **doc}
                if not create:
                    old = self._doc(key)
                    if old is not None:
                        new["_rev"] = old["_rev"]
                try:
                    self._store._db.save(new)
                    return
                except couch_http.ResourceConflict:
                    if create:
                        raise RecordExists(f"{key} exists") from None
            raise RecordExists(f"{key} kept changing while it was written")

    def delete(self, key):
        with self._store._boundary():
            for _ in range(20):
                doc = self._doc(key)
                if doc is None:
                    return False
                try:
                    self._store._db.delete(doc)
                    return True
                except couch_http.ResourceConflict:
                    continue
                except couch_http.ResourceNotFound:
                    return False
            return False

    def list(self, prefix):
        with self._store._boundary():
            rows = self._store._db.view("_all_docs", startkey=PREFIX + prefix,
                                        endkey=PREFIX + prefix + "\ufff0", include_docs=True)
            return [(row.id[len(PREFIX):], {k: v for k, v in row.doc.items() if not k.startswith("_")})
                    for row in rows if row.doc is not None]

    def close(self):
        if self._owns:
            self._store.close()
