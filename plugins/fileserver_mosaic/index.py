"""The one small interface between the mosaic plugin and a backend's tile index.

Each storage backend provides it natively (``store.capability("tile_index")``):
the embedded store an SQLite table, later CouchDB a view and MongoDB an
indexed collection. The mosaic plugin only talks to this interface, so
matching runs as a few batched index queries whatever the backend.

Tile ids are the sha256 of the normalised tile's pixels (size + RGB bytes):
content-addressed, so a duplicate is found with one indexed lookup and
whatever the source encoding was (a PNG and a BMP of the same picture are
one tile), and independent of JPEG encoder versions. The stored file is
``tiles/<id>.jpg`` in the active store.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

GRID = 2  # the sub-grid is GRID x GRID cells (Lab quadrants)


def tile_file(tile_id: str) -> str:
    """The name of a tile's image in the store."""
    return f"tiles/{tile_id}.jpg"


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


class TileIndex(abc.ABC):
    """A backend's tile index. Implementations must be thread-safe.

    ``records_read`` counts the feature records handed out by ``page`` and
    ``candidates``, so tests can prove matching reads a fraction of the
    library rather than all of it.
    """

    records_read: int = 0

    @abc.abstractmethod
    def add(self, tile_id: str, features: Features, meta: dict[str, Any]) -> bool:
        """Record a tile; False (and no change) if the id is already there."""

    @abc.abstractmethod
    def remove(self, tile_id: str) -> bool:
        """Forget a tile; False if it was not there."""

    @abc.abstractmethod
    def get(self, tile_id: str) -> TileRecord | None:
        """One tile's record, or None."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many tiles the library holds."""

    @abc.abstractmethod
    def page(self, after: str | None, limit: int) -> list[TileRecord]:
        """Up to ``limit`` tiles with ids > ``after``, in id order."""

    @abc.abstractmethod
    def candidates(self, buckets: list[int]) -> list[tuple[str, Features]]:
        """All tiles in any of ``buckets``, in ONE query (not one per bucket)."""

    def has_sha256(self, sha: str) -> str | None:
        """The id of the tile with this content hash, or None (ids are hashes)."""
        return sha if self.get(sha) is not None else None

    def refresh(self) -> None:
        """Bring the index up to date after many adds, where the backend
        builds it lazily (a CouchDB view), so the cost falls on the import
        rather than on the next mosaic. Nothing to do elsewhere."""

    def close(self) -> None:
        """Release connections."""
