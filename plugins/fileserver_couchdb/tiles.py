"""The CouchDB store's native tile index: one document per tile and a view keyed by bucket.

Tiles live in the files' database, one document each, ``"t:" + <64 hex id>``::

    {"_id": "t:<64 hex>", "bucket": 123, "lab": [L, a, b],
     "grid": [27 numbers], "meta": {...}}

``t:`` sorts outside the ``f:`` (files) and ``s:`` (staging) ranges that the
store lists and sweeps with ``_all_docs``, so listings, ``migrate`` and the
staging sweep never see a tile document, and the ``validate_doc_update`` of
``_design/fileserver`` (which checks ``f:`` documents only) lets them through.

The view ``tiles`` in ``_design/fileserver`` (``TILE_VIEW`` in ``couchdb.py``,
installed by ``fileserver init-db`` as server admin, since members may not
write design documents) is keyed by bucket and carries ``{lab, grid}`` as its
value, so ``candidates`` is ONE ``POST .../_view/tiles`` with ``{"keys": [...]}``
and no ``include_docs``. ``count`` is the view's ``total_rows`` with
``limit=0``: CouchDB keeps it in the view's b-tree and PouchDB as the index
database's document count, so it is one small request on both, where a
``_count`` reduce is re-computed from every row by PouchDB (at 3,000 tiles on
the test server: about 5 ms against 150-350 ms). ``page`` walks
``_all_docs`` over the ``t:`` range with ``include_docs`` (for ``meta``).

A view is brought up to date by the query that reads it: the first
``count``/``candidates`` after a large import indexes every document written
since (on the PouchDB test server about 3 ms per document: 8 s for 3,000).

Duplicates are impossible even with concurrent writers: a tile document is
created without a ``_rev``, so a second writer gets 409, which ``add`` reports
as False. ``remove`` deletes the revision it read; a 409 means it changed
meanwhile (re-added, or removed by someone else), so it reads again.

The index shares the store's couchdb-python session (its connection pool is
locked, so it is thread-safe) and its error boundary, so a server that is away
is ``BackendUnavailable`` (HTTP 503) here as everywhere else.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any

import couchdb.http as couch_http
from couchdb.client import ViewResults

from fileserver.errors import BackendUnavailable, StoreError
from fileserver_couchdb.files import ATTEMPTS, DESIGN, TILE_VIEW, _reason
from fileserver_mosaic.index import Features, TileIndex, TileRecord

if TYPE_CHECKING:
    from fileserver_couchdb.files import CouchDBStore

PREFIX = "t:"
#: above every ``t:`` + hex id (ids are lowercase hex, so every collation agrees)
HIGH = PREFIX + "g"
VIEW = f"{DESIGN[len('_design/'):]}/{TILE_VIEW}"  # couchdb-python's "ddoc/view"


def tile_doc_id(tile_id: str) -> str:
    return PREFIX + tile_id


def _features(bucket: Any, value: dict) -> Features:
    # JSON numbers come back as int where the fraction is 0: floats, as stored.
    return Features(lab=tuple(float(v) for v in value["lab"]),
                    grid=tuple(float(v) for v in value["grid"]), bucket=int(bucket))


def _record(doc: dict) -> TileRecord:
    return TileRecord(doc["_id"][len(PREFIX):], _features(doc["bucket"], doc),
                      dict(doc.get("meta") or {}))


class CouchTileIndex(TileIndex):
    """Tiles as documents of the store's database; a lock guards only the counter."""

    def __init__(self, store: "CouchDBStore"):
        self.store = store
        self.records_read = 0
        self._db = store._db
        self._lock = threading.Lock()

    def _counted(self, rows: list) -> list:
        with self._lock:
            self.records_read += len(rows)
        return rows

    def _doc(self, tile_id: str) -> dict | None:
        """The tile's document, or None; inside the store's boundary."""
        try:
            return self._db[tile_doc_id(tile_id)]
        except couch_http.ResourceNotFound as exc:
            if _reason(exc) in ("missing", "deleted"):
                return None
            raise  # no database: the boundary says so

    def _view(self, **options) -> ViewResults:
        """The tile view's answer, fetched (``keys`` makes it a POST); a clear
        error where init-db has not installed the view. ``reduce=false`` keeps
        multi-key queries valid should the view ever get a reduce."""
        try:
            results = self._db.view(VIEW, reduce=False, **options)
            _ = results.rows  # the request happens here, inside this try
            return results
        except couch_http.ResourceNotFound as exc:
            reason = _reason(exc)
            if reason not in ("missing", "deleted", "missing_named_view") \
                    and "view" not in reason.lower():
                raise  # no database: the boundary says so
            raise StoreError(
                f"The CouchDB database {self.store.database!r} at {self.store.url} has no "
                f"mosaic tile view ({DESIGN}/_view/{TILE_VIEW}: {reason}); run `fileserver "
                "init-db --backend couchdb --admin-url http://ADMIN:PASSWORD@HOST:PORT/` "
                "to install it.") from None

    def add(self, tile_id: str, features: Features, meta: dict[str, Any]) -> bool:
        doc = {"_id": tile_doc_id(tile_id), "bucket": int(features.bucket),
               "lab": [float(v) for v in features.lab],
               "grid": [float(v) for v in features.grid], "meta": dict(meta)}
        with self.store._boundary():
            try:
                self._db.save(doc)  # PUT without _rev: creates, or 409 if it exists
            except couch_http.ResourceConflict:
                return False  # already there, perhaps added a moment ago by another writer
        return True

    def remove(self, tile_id: str) -> bool:
        for attempt in range(ATTEMPTS):
            with self.store._boundary():
                doc = self._doc(tile_id)
                if doc is None:
                    return False
                try:
                    self._db.delete(doc)  # DELETE ?rev= the revision just read
                    return True
                except couch_http.ResourceConflict:
                    pass  # changed meanwhile: read it again
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise BackendUnavailable(f"Tile {tile_id} kept changing while being removed; try again.")

    def get(self, tile_id: str) -> TileRecord | None:
        with self.store._boundary():
            doc = self._doc(tile_id)
        return _record(doc) if doc is not None else None

    def count(self) -> int:
        with self.store._boundary():
            return int(self._view(limit=0).total_rows)  # the view's own count, no rows

    def refresh(self) -> None:
        self.count()  # any read of a view brings it up to date first

    def page(self, after: str | None, limit: int) -> list[TileRecord]:
        low = tile_doc_id(after) if after is not None else PREFIX
        if limit <= 0 or low >= HIGH:
            return []  # CouchDB refuses a reversed key range
        with self.store._boundary():
            rows = self._db.view("_all_docs", startkey=low, endkey=HIGH, inclusive_end=False,
                                 include_docs=True, limit=limit + 1).rows
        # `after` itself, if it exists, comes back first: drop it.
        rows = [row for row in rows if after is None or row.id != low][:limit]
        return [_record(row.doc) for row in self._counted(rows)]

    def candidates(self, buckets: list[int]) -> list[tuple[str, Features]]:
        wanted = sorted({int(b) for b in buckets})
        if not wanted:
            return []
        # One POST {"keys": [...]}; the rows' values carry the features.
        with self.store._boundary():
            rows = self._counted(self._view(keys=wanted).rows)
        return [(row.id[len(PREFIX):], _features(row.key, row.value)) for row in rows]

    def has_sha256(self, sha: str) -> str | None:
        with self.store._boundary():
            try:
                self._db.resource.head(tile_doc_id(sha))  # no body: just whether it is there
            except couch_http.ResourceNotFound:
                return None
        return sha

    def close(self) -> None:
        """Nothing to release: the connections belong to the store, which closes them."""
