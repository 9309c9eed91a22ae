"""The embedded store's records (accounts): an SQLite file of its own.

``accounts.sqlite3`` sits beside ``index.sqlite3`` but outside the data
directory's lock, so ``fileserver user ...`` can change accounts while a
server runs; SQLite's own locking (WAL) keeps the two consistent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from fileserver.records import RecordExists, Records, check_key

FILE = "accounts.sqlite3"


class SQLiteRecords(Records):
    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            row = self._db.execute("SELECT doc FROM records WHERE key = ?", (check_key(key),)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key, doc, *, create=False):
        verb = "INSERT" if create else "INSERT OR REPLACE"
        try:
            with self._lock:
                self._db.execute(f"{verb} INTO records (key, doc) VALUES (?, ?)",
                                 (check_key(key), json.dumps(doc)))
        except sqlite3.IntegrityError:
            raise RecordExists(f"{key} exists") from None

    def delete(self, key):
        with self._lock:
            return self._db.execute("DELETE FROM records WHERE key = ?", (check_key(key),)).rowcount > 0

    def list(self, prefix):
        with self._lock:
            rows = self._db.execute("SELECT key, doc FROM records WHERE key >= ? AND key < ? "
                                    "ORDER BY key", (prefix, prefix + "\x7f")).fetchall()
        return [(key, json.loads(doc)) for key, doc in rows]

    def close(self):
        with self._lock:
            self._db.close()
