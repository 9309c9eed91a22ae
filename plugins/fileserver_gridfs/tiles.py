"""The GridFS store's native tile index: one MongoDB collection indexed on bucket.

The collection is ``<bucket>.tiles`` (``fs.tiles`` by default), next to the
GridFS bucket's ``.files`` and ``.chunks``, so several file systems in one
database keep separate libraries. One document per tile::

    {"_id": "<64 hex>", "bucket": 123, "lab": [L, a, b], "grid": [27 numbers],
     "meta": {...}}

The ``_id`` (the tile's content hash) makes duplicates impossible even with
concurrent writers: a second insert fails with a duplicate-key error, which
``add`` reports as False. The ``bucket_1`` index (``TILES_INDEX``, created by
``init-db`` and at startup with the GridFS indexes, see
``GridFSStore._ensure_indexes``) serves ``candidates``: one
``$in`` query over all the buckets asked for, without the ``meta`` field.
``page`` walks the ``_id`` index.

The index shares the store's MongoClient, and its errors go through the
store's error boundary, so a database that is away is ``BackendUnavailable``
(HTTP 503) here as everywhere else.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

import pymongo
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from fileserver_mosaic.index import Features, TileIndex, TileRecord

#: What matching needs of a tile: everything but ``meta``.
FEATURES_ONLY = {"_id": 1, "bucket": 1, "lab": 1, "grid": 1}


def _features(doc: dict) -> Features:
    return Features(lab=tuple(doc["lab"]), grid=tuple(doc["grid"]), bucket=int(doc["bucket"]))


def _record(doc: dict) -> TileRecord:
    return TileRecord(doc["_id"], _features(doc), dict(doc.get("meta") or {}))


class MongoTileIndex(TileIndex):
    """Tiles in one collection. pymongo is thread-safe; a lock guards only the counter."""

    def __init__(self, collection: Collection, boundary: AbstractContextManager):
        """``boundary`` turns pymongo errors into store errors (the store's own)."""
        self.collection = collection
        self.records_read = 0
        self._boundary = boundary
        self._lock = threading.Lock()

    def _counted(self, docs: list[dict]) -> list[dict]:
        with self._lock:
            self.records_read += len(docs)
        return docs

    def add(self, tile_id: str, features: Features, meta: dict[str, Any]) -> bool:
        doc = {"_id": tile_id, "bucket": int(features.bucket),
               "lab": [float(v) for v in features.lab],
               "grid": [float(v) for v in features.grid], "meta": dict(meta)}
        with self._boundary:
            try:
                self.collection.insert_one(doc)
            except DuplicateKeyError:
                return False  # already there, perhaps added a moment ago by another writer
        return True

    def remove(self, tile_id: str) -> bool:
        with self._boundary:
            return self.collection.delete_one({"_id": tile_id}).deleted_count == 1

    def get(self, tile_id: str) -> TileRecord | None:
        with self._boundary:
            doc = self.collection.find_one({"_id": tile_id})
        return _record(doc) if doc is not None else None

    def count(self) -> int:
        # Exact (an estimate from collection metadata can drift, e.g. after an
        # unclean shutdown or on a sharded cluster); a tile library is small.
        with self._boundary:
            return self.collection.count_documents({})

    def page(self, after: str | None, limit: int) -> list[TileRecord]:
        if limit <= 0:
            return []  # MongoDB reads limit 0 as "no limit"
        query = {"_id": {"$gt": after}} if after else {}
        with self._boundary:
            docs = self._counted(list(self.collection.find(
                query, sort=[("_id", pymongo.ASCENDING)], limit=limit, batch_size=limit)))
        return [_record(doc) for doc in docs]

    def candidates(self, buckets: list[int]) -> list[tuple[str, Features]]:
        wanted = sorted({int(b) for b in buckets})
        if not wanted:
            return []
        # One query on the bucket index; the cursor's getMores (if the answer
        # outgrows a first batch) are part of it, not further queries.
        with self._boundary:
            docs = self._counted(list(self.collection.find(
                {"bucket": {"$in": wanted}}, FEATURES_ONLY, batch_size=10_000)))
        return [(doc["_id"], _features(doc)) for doc in docs]

    def has_sha256(self, sha: str) -> str | None:
        with self._boundary:
            found = self.collection.find_one({"_id": sha}, {"_id": 1})
        return sha if found is not None else None

    def close(self) -> None:
        """Nothing to release: the client belongs to the store, which closes it."""
