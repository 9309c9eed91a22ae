"""The mosaic's tile index, kept in the active backend's documents.

One document per tile in the collection ``tiles``, its field ``bucket``
declared indexed, so ``candidates`` is ONE native indexed query for a whole
batch of buckets whatever the backend (SQLite ``IN`` on an expression
index, CouchDB ``POST _view/... {"keys": [...]}``, MongoDB ``$in``). No
backend knows what a tile is: this module is the only place that does.

Tile ids are the sha256 of the normalised tile's pixels (size + RGB bytes):
content-addressed, so a duplicate is found with one indexed lookup and
whatever the source encoding was (a PNG and a BMP of the same picture are
one tile), and independent of JPEG encoder versions. The stored image is
``tile_path(id)``, among the server's private files (``PRIVATE_PREFIX``): in
the store, so every backend and ``fileserver migrate`` carry it, but out of
reach of /files, so no client can delete an image the index still lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from fileserver.documents import CollectionSpec, DocumentExists, Documents
from fileserver.errors import FileNotFound
from fileserver.migrate import copy_file
from fileserver.store import MAX_PAGE, PRIVATE_PREFIX, FileInfo, Store

GRID = 2  # the sub-grid is GRID x GRID cells (Lab quadrants)
COLLECTION = CollectionSpec("tiles", ("bucket",))
TILE_FOLDER = PRIVATE_PREFIX + "mosaic/tiles/"
#: Where earlier versions kept tile images: among the user's files.
LEGACY_FOLDER = "tiles/"
LEGACY_NAME = re.compile(LEGACY_FOLDER + r"([0-9a-f]{64})\.jpg")


def tile_path(tile_id: str) -> str:
    """The name of a tile's image in the store."""
    return f"{TILE_FOLDER}{tile_id}.jpg"


@dataclass(frozen=True)
class Features:
    """What matching needs of a tile: mean Lab, the sub-grid of Lab means
    (GRID*GRID*3 numbers, row by row) and the coarse bucket the index keys on."""

    lab: tuple[float, float, float]
    grid: tuple[float, ...]
    bucket: int

    def to_dict(self) -> dict[str, Any]:
        return {"lab": list(self.lab), "grid": list(self.grid), "bucket": self.bucket}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Features":
        return cls(lab=tuple(data["lab"]), grid=tuple(data["grid"]), bucket=int(data["bucket"]))


@dataclass(frozen=True)
class TileRecord:
    """One index entry: id, features and free-form meta (entry name, size...)."""

    id: str
    features: Features
    meta: dict[str, Any] = field(default_factory=dict)


class TileIndex:
    """The tile library's index on the documents contract; thread-safe (they are).

    Figures of what a call read come from ``fileserver.documents.counting()``
    around it, per thread, so two mosaics made at once report their own.
    """

    def __init__(self, documents: Documents):
        self.documents = documents
        documents.declare(COLLECTION.name, COLLECTION.indexed)

    @staticmethod
    def _features(body: dict[str, Any]) -> Features:
        # JSON numbers may come back as int where the fraction is 0: floats, as stored.
        return Features(lab=tuple(float(v) for v in body["lab"]),
                        grid=tuple(float(v) for v in body["grid"]), bucket=int(body["bucket"]))

    def _record(self, doc) -> TileRecord:
        return TileRecord(doc.id, self._features(doc.body), dict(doc.body.get("meta") or {}))

    def add(self, tile_id: str, features: Features, meta: dict[str, Any]) -> bool:
        """Record a tile; False (and no change) if the id is already there."""
        try:
            self.documents.create(COLLECTION.name, tile_id, {
                "bucket": int(features.bucket), "lab": [float(v) for v in features.lab],
                "grid": [float(v) for v in features.grid], "meta": dict(meta)})
        except DocumentExists:
            return False  # perhaps added a moment ago by another writer
        return True

    def remove(self, tile_id: str) -> bool:
        """Forget a tile; False if it was not there."""
        return self.documents.delete(COLLECTION.name, tile_id)

    def get(self, tile_id: str) -> TileRecord | None:
        found = self.documents.get(COLLECTION.name, tile_id)
        return self._record(found) if found else None

    def count(self) -> int:
        return self.documents.count(COLLECTION.name)

    def page(self, after: str | None, limit: int) -> list[TileRecord]:
        """Up to ``limit`` tiles with ids > ``after``, in id order."""
        return [self._record(d) for d in self.documents.page(COLLECTION.name, after, limit)]

    def candidates(self, buckets: list[int]) -> list[tuple[str, Features]]:
        """All tiles in any of ``buckets``, in ONE query (not one per bucket)."""
        found = self.documents.find(COLLECTION.name, "bucket", sorted({int(b) for b in buckets}))
        return [(d.id, self._features(d.body)) for d in found]

    def has_sha256(self, sha: str) -> str | None:
        """The id of the tile with this content hash, or None (ids are hashes)."""
        return sha if self.documents.get(COLLECTION.name, sha) is not None else None

    def refresh(self) -> None:
        """Bring the index up to date after many adds, where the backend builds
        it lazily (a CouchDB view is updated by the next query that reads it),
        so the cost falls on the import rather than on the next mosaic."""
        self.documents.find(COLLECTION.name, "bucket", [-1])


# -- moving images of earlier versions out of the user's files ---------------------------


def _legacy_images(store: Store) -> Iterator[tuple[str, FileInfo]]:
    """(tile id, file) for each image under ``tiles/`` that the plugin wrote:
    its meta says so, and clients cannot set meta through /files."""
    after = None
    while True:
        listing = store.list(LEGACY_FOLDER, after=after, limit=MAX_PAGE)
        for info in listing.files:
            match = LEGACY_NAME.fullmatch(info.name)
            if match and info.meta.get("mosaic") == "tile":
                yield match[1], info
        if listing.next_after is None:
            return
        after = listing.next_after


def move_legacy_images(store: Store, index: TileIndex) -> int:
    """Move the images of indexed tiles from ``tiles/`` to ``tile_path``; the
    number moved. Copy first, then delete: a crash between the two leaves
    both, the new one in use, and the next run only deletes the old one.
    Another process doing the same at once is harmless (puts are atomic)."""
    moved = 0
    for tile_id, info in _legacy_images(store):
        if index.get(tile_id) is None:
            continue  # not a tile any more: a user's file like any other
        try:
            if not store.exists(tile_path(tile_id)):
                copy_file(store, store, info, tile_path(tile_id))
            store.delete(info.name)
        except FileNotFound:
            continue  # moved by another process meanwhile
        moved += 1
    return moved
