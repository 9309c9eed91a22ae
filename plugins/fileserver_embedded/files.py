"""The embedded default store: an SQLite index plus one blob file per version.

Needs nothing but the standard library. Layout under the data directory::

    index.sqlite3   files: name -> blob, size, type, sha256, times, owner, meta;
                    inline: id -> content, for versions up to 64 KiB (blob ``=<id>``)
    documents.sqlite3   the documents contract (see documents.py)
    blobs/ab/<id>   the content of one larger version, never modified
    tmp/<id>.part   uploads in progress (removed at startup)
    lock            held while a process serves this directory
    clean-shutdown  present only after a clean close

Crash safety: an upload is written to ``tmp/``, fsynced, renamed into
``blobs/`` and only then does one SQLite transaction point the name at it.
A small upload skips the file: its content goes into ``inline`` in the same
transaction as its row. Killed before the commit, the name still points at
the old blob; leftovers are swept at the next start. Only a start after an unclean stop (no
``clean-shutdown`` marker) scans every blob for orphans, so a big store
restarted normally starts at once. Replacing is atomic for readers: they see the
old row and blob or the new ones; an old blob is unlinked after the commit,
which POSIX lets an open reader finish.

Speed: uploads that finish while another upload's transaction is being
committed wait for it together and then share one transaction, so one
fsync of the WAL makes all of them durable (group commit). Each is answered
only after its own commit, as with ``fsync = true`` alone.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import sqlite3
import threading
import uuid
from datetime import datetime
from pathlib import Path

from fileserver.errors import BackendUnavailable, ConfigError, FileNotFound, InsufficientStorage
from fileserver.options import Option, on_off
from fileserver.options import path as parse_path
from fileserver.store import NAME_MAX, FileInfo, Store, StoredFile, Upload, utcnow

from .documents import FILE as DOCUMENTS_FILE
from .documents import LEGACY, SQLiteDocuments
from .durable import EarlySync, fsync_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY,
    blob TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    owner TEXT,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS inline (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
"""
#: Uploads up to this size live in ``inline``: one SQLite commit makes one
#: durable, where a blob file costs a create, a rename and two fsyncs more
#: (and SQLite reads blobs this small faster than the file system does).
#: Such a file's ``blob`` is ``=<id>`` of its row in ``inline``.
INLINE_MAX = 64 * 1024
INLINE = "="
CLEAN_MARKER = "clean-shutdown"
#: errno values of a full disk or quota
FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
COLUMNS = "name, size, content_type, sha256, created, modified, owner, meta"


def _row_to_info(row: tuple) -> FileInfo:
    name, size, content_type, sha256, created, modified, owner, meta = row
    return FileInfo(name=name, size=size, content_type=content_type, sha256=sha256,
                    created=datetime.fromisoformat(created),
                    modified=datetime.fromisoformat(modified),
                    owner=owner, meta=json.loads(meta))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Pending:
    """An upload whose content is safe, waiting for the transaction that
    points its name at it (see ``EmbeddedStore._commit``)."""

    __slots__ = ("name", "upload", "blob", "data", "result", "error", "done")

    def __init__(self, name: str, upload: Upload, blob: str | None, data: bytes | None):
        """``blob``: the blob file's name; None with ``data`` for an inline file."""
        self.name, self.upload, self.blob, self.data = name, upload, blob, data
        self.result: tuple[FileInfo, bool] | None = None
        self.error: BaseException | None = None
        self.done = False


class EmbeddedStore(Store):
    """Files on local disk, indexed by SQLite; safe under waitress's threads."""

    NAME = "embedded"
    OPTIONS = {
        "path": Option(parse_path, None, "where the data lives; default: data_dir"),
        # fsync makes an upload survive a power cut, not just a killed process;
        # on slow disks it is most of an upload's time, hence the option.
        "fsync": Option(on_off, True, "false: faster uploads, but a power cut may lose recent ones"),
    }

    @classmethod
    def _from_config(cls, settings, options):
        return cls(options["path"] or settings.data_dir, max_size=settings.max_upload_size,
                   fsync=options["fsync"])

    def __init__(self, root: str | os.PathLike, *, max_size: int | None = None,
                 fsync: bool = True):
        super().__init__(max_size=max_size)
        self.fsync = fsync
        self.root = Path(root).resolve()
        self.location = str(self.root)
        self._blobs = str(self.root / "blobs")
        try:
            for sub in ("blobs", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._lockfile = open(self.root / "lock", "a+")
        except OSError as exc:
            raise ConfigError(f"data_dir: cannot use {self.root}: {exc.strerror}") from exc
        if fcntl is not None:
            try:
                fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lockfile.close()
                raise ConfigError(f"data_dir: {self.root} is in use by another fileserver "
                                  "process; stop it or choose another data_dir.") from None
        # One connection for writes, behind a lock; one per thread for reads,
        # which WAL mode lets run alongside the writer without waiting.
        self._lock = threading.Lock()
        self._queued = threading.Lock()  # guards _queue: uploads waiting to commit
        self._queue: list[_Pending] = []
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._documents = None  # see documents()
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        marker = self.root / CLEAN_MARKER
        clean = marker.exists()
        marker.unlink(missing_ok=True)  # from here on, a crash means unclean
        if self.fsync:
            fsync_dir(self.root)
        self._sweep(orphans=not clean)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite3", check_same_thread=False,
                             isolation_level=None)
        # FULL: a commit that deleted an old blob must survive a power cut.
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=10000")
        self._connections.append(db)
        return db

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            with self._lock:
                db = self._local.db = self._connect()
        return db

    # -- housekeeping -------------------------------------------------------------

    def _blob_path(self, blob: str) -> str:
        return f"{self._blobs}/{blob[:2]}/{blob}"  # a str: pathlib costs more per GET

    def _sweep(self, orphans: bool) -> None:
        """Remove what an interrupted process left: partial uploads and, after
        an unclean stop, blobs no row points at."""
        for part in (self.root / "tmp").iterdir():
            part.unlink(missing_ok=True)
        if not orphans:
            return
        with self._lock:  # inline rows are written with their file rows; belt and braces
            self._db.execute("DELETE FROM inline WHERE '=' || id NOT IN (SELECT blob FROM files)")
        known = {row[0] for row in self._reader().execute("SELECT blob FROM files")}
        for folder in (self.root / "blobs").iterdir():
            for blob in folder.iterdir():
                if blob.name not in known:
                    blob.unlink(missing_ok=True)

    @classmethod
    def _missing(cls, settings, options):
        root = Path(options["path"] or settings.data_dir).resolve()
        if not root.is_dir():
            return f"no such directory {root}"
        # The files index alone is a store too (files put before any document);
        # a first-layout accounts or tiles file is upgraded on opening.
        markers = ("index.sqlite3", DOCUMENTS_FILE, *(old for old, _ in LEGACY.values()))
        if not any((root / name).exists() for name in markers):
            return f"{root} holds neither index.sqlite3 nor {DOCUMENTS_FILE}"
        return None

    @classmethod
    def _open_documents(cls, settings, options):
        root = Path(options["path"] or settings.data_dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return SQLiteDocuments(root / DOCUMENTS_FILE)

    def documents(self):
        """``documents.sqlite3``, opened on first use (see documents.py)."""
        with self._lock:
            if self._documents is None:
                self._documents = SQLiteDocuments(self.root / DOCUMENTS_FILE, fsync=self.fsync)
            return self._documents

    def close(self) -> None:
        with self._lock:
            if self._documents is not None:
                self._documents.close()
            for db in self._connections:
                db.close()
            self._connections.clear()
        if not self._lockfile.closed:
            (self.root / CLEAN_MARKER).touch()
            self._lockfile.close()

    # -- primitives ----------------------------------------------------------------

    def _put(self, name: str, upload: Upload) -> tuple[FileInfo, bool]:
        head = bytearray()
        while len(head) <= INLINE_MAX and (chunk := upload.read(INLINE_MAX + 1 - len(head))):
            head += chunk
        if upload.complete:
            return self._commit(_Pending(name, upload, None, bytes(head)))
        blob = uuid.uuid4().hex
        self._write_blob(blob, head, upload)
        try:
            return self._commit(_Pending(name, upload, blob, None))
        except BaseException:
            _unlink(self._blob_path(blob))
            raise

    def _write_blob(self, blob: str, head: bytes, upload: Upload) -> None:
        """The content as ``blobs/ab/<blob>``, durable, before any row names it."""
        part = self.root / "tmp" / f"{blob}.part"
        final = Path(self._blob_path(blob))
        try:
            with open(part, "wb") as out:
                out.write(head)
                with EarlySync(out, self.fsync) as early:
                    for chunk in upload.chunks():
                        out.write(chunk)
                        early.wrote(len(chunk))
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            final.parent.mkdir(exist_ok=True)
            os.replace(part, final)
            if self.fsync:
                fsync_dir(final.parent)
        except BaseException as exc:
            part.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in FULL:
                raise self._full(exc) from None
            raise

    def _commit(self, job: _Pending) -> tuple[FileInfo, bool]:
        """Point the name at the new content. The thread that gets the writer's
        lock commits every upload queued by then in one transaction; the others
        find theirs done when they get the lock in turn."""
        with self._queued:
            self._queue.append(job)
        with self._lock:
            if not job.done:
                with self._queued:
                    batch, self._queue = self._queue, []
                self._write_batch(batch)
        if job.error is not None:
            raise job.error
        return job.result

    def _write_batch(self, batch: list[_Pending]) -> None:
        """One transaction for the batch; if it fails, one for each upload, so an
        upload fails only for its own reason."""
        try:
            self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = self._translated(exc)
            else:
                for job in batch:
                    try:
                        self._transaction([job])
                    except Exception as exc:
                        job.error = self._translated(exc)
        finally:
            for job in batch:
                if job.result is None and job.error is None:
                    job.error = BackendUnavailable("The upload's commit was interrupted; "
                                                   "nothing was stored.")
                job.done = True

    @contextlib.contextmanager
    def _writing(self):
        """A write transaction on the writer's connection (its lock held). It
        yields a list for the blob files it frees, unlinked once committed."""
        unlink: list[str] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield unlink
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for blob in unlink:
            _unlink(self._blob_path(blob))

    def _transaction(self, batch: list[_Pending]) -> None:
        now, results = utcnow(), []
        with self._writing() as unlink:
            for job in batch:
                row = self._db.execute("SELECT blob, created FROM files WHERE name = ?",
                                       (job.name,)).fetchone()
                created = datetime.fromisoformat(row[1]) if row else now
                info = job.upload.to_info(job.name, created=created, modified=now)
                blob = job.blob
                if blob is None:
                    blob = INLINE + str(self._db.execute("INSERT INTO inline (data) VALUES (?)",
                                                         (job.data,)).lastrowid)
                self._db.execute(
                    "INSERT OR REPLACE INTO files (name, blob, size, content_type, sha256,"
                    " created, modified, owner, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job.name, blob, info.size, info.content_type, info.sha256,
                     info.created.isoformat(), info.modified.isoformat(), info.owner,
                     json.dumps(info.meta)))
                if row:
                    self._drop(row[0], unlink)
                results.append((info, row is None))
        for job, result in zip(batch, results):
            job.result = result

    def _drop(self, blob: str, unlink: list[str]) -> None:
        """Inside a transaction: delete an inline content, or note a blob file
        to unlink once the transaction is committed."""
        if blob.startswith(INLINE):
            self._db.execute("DELETE FROM inline WHERE id = ?", (int(blob[1:]),))
        else:
            unlink.append(blob)

    def _translated(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.OperationalError) and \
                getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return self._full(exc)
        return exc

    def _full(self, exc: Exception) -> InsufficientStorage:
        reason = getattr(exc, "strerror", None) or str(exc)
        return InsufficientStorage(f"The disk holding {self.root} is full ({reason}); nothing "
                                   "was stored. Free some space there, or delete files.")

    def _row(self, name: str) -> tuple:
        row = self._reader().execute(f"SELECT blob, {COLUMNS} FROM files WHERE name = ?",
                                     (name,)).fetchone()
        if row is None:
            raise FileNotFound(f"No file named {name!r}.")
        return row

    def _open(self, name: str, start: int, end: int | None) -> StoredFile:
        # A concurrent replace may unlink the blob between reading the row and
        # opening it; the new row then names the new blob, so look again.
        for _ in range(5):
            row = self._reader().execute(
                f"SELECT blob, {COLUMNS}, CASE WHEN blob GLOB '=*' THEN (SELECT data FROM"
                " inline WHERE id = substr(blob, 2)) END FROM files WHERE name = ?",
                (name,)).fetchone()
            if row is None:
                raise FileNotFound(f"No file named {name!r}.")
            if row[-1] is not None:
                raw = io.BytesIO(row[-1])
            else:
                try:
                    raw = open(self._blob_path(row[0]), "rb")
                except FileNotFoundError:
                    continue
            raw.seek(start)
            return StoredFile(_row_to_info(row[1:-1]), raw, start=start, end=end)
        raise BackendUnavailable(f"{name!r} kept changing while being opened; try again.")

    def _info(self, name: str) -> FileInfo:
        return _row_to_info(self._row(name)[1:])

    def _delete(self, name: str) -> None:
        with self._lock, self._writing() as unlink:
            rows = self._db.execute("DELETE FROM files WHERE name = ? RETURNING blob",
                                    (name,)).fetchall()
            for (blob,) in rows:
                self._drop(blob, unlink)
        if not rows:
            raise FileNotFound(f"No file named {name!r}.")

    def _list(self, prefix: str, after: str | None, limit: int) -> list[FileInfo]:
        # The base class guarantees after >= prefix when given.
        low, op = (after, ">") if after is not None else (prefix, ">=")
        rows = self._reader().execute(
            f"SELECT {COLUMNS} FROM files WHERE name {op} ? AND name < ?"
            " ORDER BY name LIMIT ?", (low, prefix + NAME_MAX, limit)).fetchall()
        return [_row_to_info(row) for row in rows]
