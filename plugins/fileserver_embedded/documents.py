"""The embedded store's documents: SQLite tables with real indexes.

``documents.sqlite3`` sits beside ``index.sqlite3`` but outside the data
directory's lock, so ``fileserver user ...`` can change accounts while a
server runs; SQLite's own locking (WAL, a busy timeout) keeps the two
consistent. One table per collection::

    c_<name> (id TEXT PRIMARY KEY, version INTEGER, body TEXT (JSON), expires REAL)

with an index on ``expires`` and one expression index per declared field,
``json_extract(body, '$.<field>')``, which ``find``'s ``IN (...)`` query uses
(the tests check SQLite's query plan). A replace is one
``UPDATE ... WHERE id = ? AND version = ?``: the row count says who won.

Upgrading from the first layout (``LEGACY``): the accounts' key/JSON table
(``accounts.sqlite3``) and the mosaic's tile table (``tiles.sqlite3``) are
copied, create-only, into the collections ``accounts`` and ``tiles`` when
those are first declared; the old file is then renamed ``*.upgraded``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from fileserver.documents import CollectionSpec, Doc, DocumentExists, Documents, VersionConflict

FILE = "documents.sqlite3"
COLUMNS = "id, version, body, expires"
#: collection -> (old file, query giving (id, JSON body) rows)
LEGACY = {
    "accounts": ("accounts.sqlite3", "SELECT key, doc FROM records"),
    "tiles": ("tiles.sqlite3", "SELECT id, json_object('bucket', bucket, 'lab', "
              "json_array(l, a, b), 'grid', json(grid), 'meta', json(meta)) FROM tiles"),
}


def _table(spec: CollectionSpec) -> str:
    return f"c_{spec.name}"  # the name was checked against [a-z][a-z0-9_]*


class SQLiteDocuments(Documents):
    def __init__(self, path: str | Path, *, fsync: bool = True):
        super().__init__()
        self.path = Path(path)
        self.location = str(self.path.parent)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.execute("PRAGMA busy_timeout=10000")

    def _run(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @staticmethod
    def _doc(row: tuple) -> Doc:
        return Doc(row[0], str(row[1]), json.loads(row[2]), row[3])

    def _declare(self, spec):
        table = _table(spec)
        script = [f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, "
                  "version INTEGER NOT NULL, body TEXT NOT NULL, expires REAL)",
                  f"CREATE INDEX IF NOT EXISTS {table}__expires ON {table} (expires) "
                  "WHERE expires IS NOT NULL"]
        script += [f"CREATE INDEX IF NOT EXISTS {table}_{field} ON {table} "
                   f"(json_extract(body, '$.{field}'))" for field in spec.indexed]
        with self._lock:
            for statement in script:
                self._db.execute(statement)
        if spec.name in LEGACY:
            self._upgrade(spec, *LEGACY[spec.name])

    def _upgrade(self, spec: CollectionSpec, file: str, query: str) -> None:
        old = self.path.parent / file
        if not old.exists():
            return
        source = sqlite3.connect(old)
        try:
            rows = source.execute(query).fetchall()
        except sqlite3.OperationalError:  # not the old layout after all
            rows = None
        finally:
            source.close()
        if rows is None:
            return
        for doc_id, body in rows:
            try:
                self._create(spec, doc_id, json.loads(body), None)
            except DocumentExists:
                pass  # copied by an earlier, interrupted upgrade
        for suffix in ("", "-wal", "-shm"):
            try:
                Path(f"{old}{suffix}").rename(f"{old}{suffix}.upgraded")
            except FileNotFoundError:
                pass  # another process upgraded it at the same moment

    def _get(self, spec, doc_id):
        rows = self._rows(f"SELECT {COLUMNS} FROM {_table(spec)} WHERE id = ?", (doc_id,))
        return self._doc(rows[0]) if rows else None

    def _create(self, spec, doc_id, body, expires):
        text = json.dumps(body)
        try:
            self._run(f"INSERT INTO {_table(spec)} (id, version, body, expires) "
                      "VALUES (?, 1, ?, ?)", (doc_id, text, expires))
        except sqlite3.IntegrityError:
            raise DocumentExists(f"{spec.name}/{doc_id} exists already.") from None
        return Doc(doc_id, "1", json.loads(text), expires)

    def _replace(self, spec, doc_id, body, version, expires):
        text = json.dumps(body)
        try:
            number = int(version)
        except ValueError:
            number = -1
        changed = self._run(f"UPDATE {_table(spec)} SET version = version + 1, body = ?, "
                            "expires = ? WHERE id = ? AND version = ?",
                            (text, expires, doc_id, number)).rowcount
        if changed != 1:
            raise VersionConflict(f"{spec.name}/{doc_id} changed since version {version}.")
        return Doc(doc_id, str(number + 1), json.loads(text), expires)

    def _delete(self, spec, doc_id, version):
        if version is None:
            return self._run(f"DELETE FROM {_table(spec)} WHERE id = ?", (doc_id,)).rowcount == 1
        if self._run(f"DELETE FROM {_table(spec)} WHERE id = ? AND version = ?",
                     (doc_id, version)).rowcount == 1:
            return True
        if self._get(spec, doc_id) is None:
            return False
        raise VersionConflict(f"{spec.name}/{doc_id} changed since version {version}.")

    def _find(self, spec, field_name, values):
        # One statement whatever the batch size: the values travel as one JSON
        # array, and SQLite probes the expression index once per value.
        rows = self._rows(f"SELECT {COLUMNS} FROM {_table(spec)} "
                          f"WHERE json_extract(body, '$.{field_name}') IN "
                          "(SELECT value FROM json_each(?))", (json.dumps(values),))
        return [self._doc(row) for row in rows]

    def _page(self, spec, after, limit):
        rows = self._rows(f"SELECT {COLUMNS} FROM {_table(spec)} WHERE id > ? "
                          "ORDER BY id LIMIT ?", (after or "", limit))
        return [self._doc(row) for row in rows]

    def _count(self, spec):
        return self._rows(f"SELECT count(*) FROM {_table(spec)}")[0][0]

    def _expire(self, spec, now):
        return self._run(f"DELETE FROM {_table(spec)} WHERE expires IS NOT NULL AND expires <= ?",
                         (now,)).rowcount

    def query_plan(self, spec_name: str, field_name: str) -> str:
        """SQLite's plan for ``find`` (for the tests: it must use the index)."""
        rows = self._rows(f"EXPLAIN QUERY PLAN SELECT id FROM c_{spec_name} "
                          f"WHERE json_extract(body, '$.{field_name}') IN "
                          "(SELECT value FROM json_each(?))", ("[1, 2]",))
        return " ".join(str(row[-1]) for row in rows)

    def close(self):
        with self._lock:
            self._db.close()
