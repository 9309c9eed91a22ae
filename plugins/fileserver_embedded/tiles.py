"""The embedded store's native tile index: one SQLite table keyed by bucket.

It lives next to the store's own index in the data directory, in a file of
its own (``tiles.sqlite3``), so the mosaic never touches the store's schema
and a store without tiles never creates it. WAL lets readers run while a
ZIP import writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from fileserver_mosaic.index import Features, TileIndex, TileRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS tiles (
    id TEXT PRIMARY KEY,
    bucket INTEGER NOT NULL,
    l REAL NOT NULL, a REAL NOT NULL, b REAL NOT NULL,
    grid TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS tiles_bucket ON tiles (bucket);
"""


class SQLiteTileIndex(TileIndex):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records_read = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)

    def _rows(self, sql: str, params: tuple = (), *, counted: bool = False) -> list[tuple]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
            if counted:
                self.records_read += len(rows)
            return rows

    @staticmethod
    def _features(row: tuple) -> Features:
        bucket, l, a, b, grid = row
        return Features(lab=(l, a, b), grid=tuple(json.loads(grid)), bucket=bucket)

    def add(self, tile_id: str, features: Features, meta: dict[str, Any]) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO tiles (id, bucket, l, a, b, grid, meta)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tile_id, features.bucket, *features.lab, json.dumps(list(features.grid)),
                 json.dumps(meta)))
            return cursor.rowcount == 1

    def remove(self, tile_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM tiles WHERE id = ?", (tile_id,)).rowcount == 1

    def get(self, tile_id: str) -> TileRecord | None:
        rows = self._rows("SELECT id, bucket, l, a, b, grid, meta FROM tiles WHERE id = ?",
                          (tile_id,))
        return self._record(rows[0]) if rows else None

    def _record(self, row: tuple) -> TileRecord:
        return TileRecord(row[0], self._features(row[1:6]), json.loads(row[6]))

    def count(self) -> int:
        return self._rows("SELECT count(*) FROM tiles")[0][0]

    def page(self, after: str | None, limit: int) -> list[TileRecord]:
        rows = self._rows("SELECT id, bucket, l, a, b, grid, meta FROM tiles WHERE id > ?"
                          " ORDER BY id LIMIT ?", (after or "", limit), counted=True)
        return [self._record(row) for row in rows]

    def candidates(self, buckets: list[int]) -> list[tuple[str, Features]]:
        # Buckets number 640, within SQLite's smallest host-parameter limit (999).
        wanted = sorted({int(b) for b in buckets})
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self._rows(f"SELECT id, bucket, l, a, b, grid FROM tiles WHERE bucket IN ({marks})",
                          tuple(wanted), counted=True)
        return [(row[0], self._features(row[1:])) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
