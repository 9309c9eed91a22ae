"""The GridFS store: files in a MongoDB GridFS bucket, through pymongo.

Options (``[backend.gridfs]``): ``uri`` (default ``mongodb://127.0.0.1:27017/``;
client options such as ``serverSelectionTimeoutMS`` may go in its query),
``database`` (default ``fileserver``) and ``bucket`` (default ``fs``).

Layout: the standard GridFS collections ``<bucket>.files`` and
``<bucket>.chunks``. A stored file is one files document whose ``filename``
is the name; its ``metadata`` holds ``sha256``, ``content_type``, ``owner``,
``meta``, ``created`` (copied from the revision replaced) and ``modified``.
``uploadDate``, set by GridFS when a revision completes, orders revisions
(and stands in for missing times in files other tools wrote). Indexes:
GridFS's own ``filename_1_uploadDate_1`` on files (by-name lookups, and
listings as filename ranges in index order) and the unique ``files_id_1_n_1``
on chunks. The documents contract lives beside them in ``<bucket>.docs.*``
collections (see documents.py); GridFS tools and the housekeeping here
ignore those.

Atomicity: a replace streams the body into a new revision's chunks (a few
at a time, as GridFS drivers do but without GridIn's 48 MB buffer) and
writes the files document -- the only thing readers look for -- last, so no
reader sees a half-written file, and a failed upload is aborted (its chunks
deleted) leaving the old revision as it was; a database out of space or over
its quota is ``InsufficientStorage`` (507), aborted the same way. Only then
are older revisions of the name deleted. "Newest" always means the largest
``(uploadDate, _id)``: reads pick it, listings keep only it, and every writer
deletes everything older than it, so concurrent writers agree on one winner.
An upload cut off by a killed process leaves chunks without a files document;
``sweep_orphans`` (run by ``init_db``, and beside serving at startup) deletes
those once they have been quiet for ``ORPHAN_AGE``, which spares uploads
still in progress.

A reader holding a revision that a replace then deletes keeps what its chunk
cursor has already fetched (a first batch of up to 16 MiB on MongoDB);
beyond that it fails mid-stream, so replacing a file that is being downloaded
may cut that download short.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import gridfs
import pymongo
from bson import ObjectId
from gridfs.errors import CorruptGridFile, NoFile
from pymongo.errors import (ConfigurationError, ConnectionFailure, InvalidName,
                            OperationFailure, PyMongoError)
from pymongo.write_concern import WriteConcern

from fileserver.config import mask_password
from fileserver.options import Option, text
from fileserver.errors import (BackendUnavailable, ConfigError, Error, FileNotFound,
                               InsufficientStorage, StoreError)
from fileserver.store import NAME_MAX, FileInfo, Store, StoredFile, Upload, utcnow

from .documents import MongoDocuments

log = logging.getLogger(__name__)

DEFAULT_URI = "mongodb://127.0.0.1:27017/"
#: Chunks without a files document and quiet for this long are an interrupted
#: upload. (A live upload writes a batch every 4 MiB, and waitress has the
#: whole body before the store sees it, so a live one is never quiet that long.)
ORPHAN_AGE = timedelta(hours=1)
#: Client defaults, unless the URI sets them: fail fast when the database is
#: away (startup and requests answer within seconds), and never hang forever.
CLIENT_DEFAULTS = {"serverSelectionTimeoutMS": 3000, "socketTimeoutMS": 120_000}
CHUNK_SIZE = gridfs.DEFAULT_CHUNK_SIZE  # 255 KiB, what GridFS drivers use
BATCH = 16  # chunks per insert: about 4 MiB in flight per upload
NEWEST = [("uploadDate", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)]
FILES_INDEX = [("filename", pymongo.ASCENDING), ("uploadDate", pymongo.ASCENDING)]
CHUNKS_INDEX = [("files_id", pymongo.ASCENDING), ("n", pymongo.ASCENDING)]
#: Codes of a database out of space: mongod's OutOfDiskSpace (a file write
#: hitting ENOSPC, too little disk for an index build) and MMAPv1's "quota exceeded".
FULL_CODES = {14031, 12501}
#: ... and how messages say it: Atlas's "you are over your space quota" comes with
#: its catch-all code 8000, WiredTiger's ENOSPC as "No space left on device".
FULL_WORDS = ("over your space quota", "no space left on device", "enospc",
              "disk quota exceeded", "out of disk space")


def _reason(exc: Exception) -> str:
    # pymongo appends its timeouts and the whole topology description; the first
    # part ("host:port: [Errno 111] Connection refused") is what people need.
    text = re.split(r" \(configured timeouts|, Timeout: ", str(exc), maxsplit=1)[0]
    return text if len(text) <= 300 else text[:300] + "..."


def _server_errors(exc: Exception) -> list[dict]:
    """The server's error documents (code, codeName, errmsg) in a pymongo error."""
    details = getattr(exc, "details", None)
    if not isinstance(details, dict):
        return [{"code": getattr(exc, "code", None), "errmsg": str(exc)}]
    found = [details, *(details.get("writeErrors") or []),
             *(details.get("writeConcernErrors") or [])]
    if isinstance(details.get("writeConcernError"), dict):
        found.append(details["writeConcernError"])
    return [each for each in found if isinstance(each, dict)]


def _out_of_space(exc: Exception) -> str | None:
    """What a server error says when the database is out of space, else None."""
    for error in _server_errors(exc):
        message = str(error.get("errmsg") or "")
        if error.get("code") in FULL_CODES or any(w in message.lower() for w in FULL_WORDS):
            name = error.get("codeName") or error.get("code")
            return f"{name}: {message}" if name is not None else message
    return None


class _Boundary:
    """Turns pymongo errors into store errors (``with self._boundary:``)."""

    def __init__(self, where: str, database: str = ""):
        self.where, self.database = where, database

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None or isinstance(exc, Error):
            return
        if isinstance(exc, ConnectionFailure):  # also AutoReconnect, timeouts
            raise BackendUnavailable(f"The database at {self.where} is not answering "
                                     f"({_reason(exc)}); try again later.") from exc
        if isinstance(exc, NoFile):
            raise FileNotFound(str(exc)) from exc
        full = _out_of_space(exc) if isinstance(exc, PyMongoError) else None
        if full is not None:
            raise InsufficientStorage(
                f"The MongoDB database {self.database!r} at {self.where} is out of space "
                f"({full}); nothing was stored. Free disk space on the database server (or "
                "raise its quota), or delete files.") from exc
        if isinstance(exc, PyMongoError):
            raise StoreError(f"The database at {self.where} failed: {_reason(exc)}") from exc


def _journaled(concern: WriteConcern) -> WriteConcern:
    """The client's write concern (from the URI) plus ``j``, unless it asks for fsync
    (which implies it) or no acknowledgement (which GridFSBucket refuses anyway)."""
    document = dict(concern.document)
    if not document.get("fsync") and document.get("w") != 0:
        document["j"] = True
    return WriteConcern(**document)


def _ms(moment: datetime) -> datetime:
    """BSON dates keep milliseconds: the value as it will read back."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _to_info(doc: dict) -> FileInfo:
    meta = doc.get("metadata") or {}
    return FileInfo(name=doc["filename"], size=int(doc["length"]),
                    content_type=meta.get("content_type") or "application/octet-stream",
                    sha256=meta.get("sha256", ""), created=meta.get("created", doc["uploadDate"]),
                    modified=meta.get("modified", doc["uploadDate"]), owner=meta.get("owner"),
                    meta=dict(meta.get("meta") or {}))


def _age_key(doc: dict) -> tuple:
    return doc["uploadDate"], doc["_id"]


class _Reader:
    """A GridOut whose first chunk was already fetched (see ``_open``)."""

    def __init__(self, grid_out: gridfs.GridOut, head: bytes):
        self._grid_out = grid_out
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._grid_out.read(n)
        if n is not None and 0 <= n <= len(self._head):
            data, self._head = self._head[:n], self._head[n:]
            return data
        rest = -1 if n is None or n < 0 else n - len(self._head)
        data, self._head = self._head + self._grid_out.read(rest), b""
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        pos = self.tell() + pos if whence == 1 else pos
        self._head = b""
        return self._grid_out.seek(pos, 2 if whence == 2 else 0)

    def tell(self) -> int:
        return self._grid_out.tell() - len(self._head)

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._grid_out.close()


class GridFSStore(Store):
    """Files in one GridFS bucket; one MongoClient, shared by waitress's threads."""

    NAME = "gridfs"
    OPTIONS = {
        "uri": Option(text, DEFAULT_URI, "mongodb://... (client options may go in its query)"),
        "database": Option(text, "fileserver", "the database's name"),
        "bucket": Option(text, "fs", "the GridFS bucket's name"),
    }

    @classmethod
    def _from_config(cls, settings, options):
        store = cls(options["uri"], database=options["database"], bucket=options["bucket"],
                    max_size=settings.max_upload_size)
        try:
            with store._boundary:
                store._ensure_indexes()  # cheap when they exist; init-db says more
        except BaseException:
            store.close()
            raise
        # The sweep reads every chunk id of the bucket: on a big store that
        # takes a while, so it runs beside serving instead of before it.
        threading.Thread(target=store._sweep_quietly, name="gridfs-sweep", daemon=True).start()
        return store

    def _sweep_quietly(self) -> None:
        try:
            with self._boundary:
                self.sweep_orphans()
        except Exception as exc:  # closed meanwhile, database away: the next start retries
            log.warning("gridfs: orphan sweep at startup did not finish: %s", exc)

    @classmethod
    def _init_db(cls, settings, options, *, admin_url, collections):
        store = cls(admin_url or options["uri"], database=options["database"],
                    bucket=options["bucket"])
        try:
            with store._boundary:
                lines = store._ensure_indexes() or ["indexes already there"]
                for spec in collections:
                    store.documents().declare(spec.name, spec.indexed)
                if collections:
                    lines.append("collections ready: " + ", ".join(s.name for s in collections))
                uploads, chunks = store.sweep_orphans()
        finally:
            store.close()
        if chunks:
            lines.append(f"removed {chunks} chunks of {uploads} interrupted uploads")
        return [f"gridfs: {store.location}: {line}" for line in lines]

    def __init__(self, uri: str = DEFAULT_URI, *, database: str | None = None,
                 bucket: str | None = None, max_size: int | None = None,
                 client: pymongo.MongoClient | None = None):
        """Connect and check the database answers (``BackendUnavailable`` if not)."""
        super().__init__(max_size=max_size)
        database, bucket, where = database or "fileserver", bucket or "fs", mask_password(uri)
        self.location = f"{where} (database {database}, bucket {bucket})"
        self._boundary = _Boundary(where, database)
        if client is None:
            lowered = uri.lower()
            defaults = {k: v for k, v in CLIENT_DEFAULTS.items() if f"{k.lower()}=" not in lowered}
            try:
                client = pymongo.MongoClient(uri, tz_aware=True, tzinfo=timezone.utc, **defaults)
            except (ConfigurationError, ValueError, TypeError) as exc:
                raise ConfigError(f"backend.gridfs uri {where}: {exc}") from None
        self._client = client
        self._lock = threading.Lock()
        self._documents = None  # see documents()
        try:
            db = client[database]
            self._root = db[bucket]
            # Writes that make a revision exist or go away are journaled: a
            # 201 or 204 must survive the database being killed. (SecantusDB
            # lost files acknowledged without j after a SIGKILL; the journal is
            # sequential, so the chunks written before are durable too.)
            durable = _journaled(db.write_concern)
            self._files = self._root.files.with_options(write_concern=durable)
            self._chunks = self._root.chunks
            self._db, self._durable, self._bucket_name = db, durable, bucket
            self._bucket = gridfs.GridFSBucket(db, bucket_name=bucket, write_concern=durable)
            client.admin.command("ping")  # the one place startup waits for the server
        except (InvalidName, TypeError) as exc:
            client.close()
            raise ConfigError(f"backend.gridfs: bad database or bucket name: {exc}") from None
        except ConnectionFailure as exc:
            client.close()
            raise BackendUnavailable(f"backend.gridfs: cannot reach MongoDB at {where} "
                                     f"({_reason(exc)})") from None
        except PyMongoError as exc:  # e.g. authentication failed
            client.close()
            raise ConfigError(f"backend.gridfs: MongoDB at {where} refused the connection: "
                              f"{_reason(exc)}") from None

    @classmethod
    def _missing(cls, settings, options):
        store = cls(options["uri"], database=options["database"], bucket=options["bucket"])
        try:
            with store._boundary:
                try:
                    names = store._db.list_collection_names()
                except OperationFailure:  # a user without the right to list: cannot tell
                    return None
        finally:
            store.close()
        if any(name.startswith(f"{store._bucket_name}.") for name in names):
            return None
        return f"no collection {store._bucket_name}.* in {store.location}"

    @classmethod
    def _open_documents(cls, settings, options):
        store = cls(options["uri"], database=options["database"], bucket=options["bucket"])
        return MongoDocuments(store._db, store._bucket_name, store._durable, store._boundary,
                              store.close, store.location)

    def documents(self):
        """Collections ``<bucket>.docs.*`` (see documents.py), sharing this store's client."""
        with self._lock:
            if self._documents is None:
                self._documents = MongoDocuments(self._db, self._bucket_name, self._durable,
                                                 self._boundary, location=self.location)
            return self._documents

    def close(self) -> None:
        self._client.close()  # the documents' client too

    # -- housekeeping -------------------------------------------------------------

    def _ensure_indexes(self) -> list[str]:
        """Create the GridFS indexes (the same ones pymongo would); returns what was new."""
        done = []
        for collection, keys, unique in [(self._files, FILES_INDEX, False),
                                         (self._chunks, CHUNKS_INDEX, True)]:
            existing = [index["key"] for index in collection.list_indexes()]
            if not any(list(key.items()) == keys for key in existing):
                name = collection.create_index(keys, unique=unique)
                done.append(f"created index {name} on {collection.name}")
        return done

    def sweep_orphans(self, older_than: timedelta = ORPHAN_AGE) -> tuple[int, int]:
        """Delete chunks of interrupted uploads; returns (uploads, chunks) removed.

        An orphan has chunks but no files document, and both its id (taken
        when its upload began) and its newest chunk's id (when that chunk was
        sent) are older than ``older_than``: an upload in progress elsewhere
        is younger than that or still sending.
        """
        cutoff = ObjectId.from_datetime(utcnow() - older_than)
        candidates = self._chunks.aggregate([
            {"$match": {"files_id": {"$lt": cutoff}}},
            {"$group": {"_id": "$files_id"}},  # needs only files_id: an index-only scan
            {"$lookup": {"from": self._files.name, "localField": "_id",
                         "foreignField": "_id", "as": "file"}},
            {"$match": {"file": {"$size": 0}}},
            {"$project": {"_id": 1}},
        ], allowDiskUse=True)
        uploads = chunks = 0
        for candidate in candidates:
            last = self._chunks.find_one({"files_id": candidate["_id"]}, {"_id": 1},
                                         sort=[("n", pymongo.DESCENDING)])
            if last is not None and last["_id"] < cutoff:
                chunks += self._chunks.delete_many({"files_id": candidate["_id"]}).deleted_count
                uploads += 1
        if uploads:
            log.info("gridfs: removed %d chunks of %d interrupted uploads", chunks, uploads)
        return uploads, chunks

    def _newest(self, name: str) -> dict | None:
        return self._files.find_one({"filename": name}, sort=NEWEST)

    def _drop_older(self, name: str) -> None:
        """Delete every revision of ``name`` but the newest (see the module docstring)."""
        revisions = sorted(self._files.find({"filename": name}, {"uploadDate": 1}),
                           key=_age_key)
        for doc in revisions[:-1]:
            try:
                self._bucket.delete(doc["_id"])
            except NoFile:
                pass  # another writer got there first

    # -- primitives ----------------------------------------------------------------

    def _put(self, name: str, upload: Upload) -> tuple[FileInfo, bool]:
        # The GridFS layout written here rather than through GridIn: GridIn
        # holds up to 48 MB of chunks (and then their BSON) per upload before
        # sending them; a few chunks at a time keeps a server's memory flat.
        files_id = ObjectId()
        with self._boundary:
            try:
                length = self._write_chunks(files_id, upload)
                # Looked up as late as possible: the revision this one replaces.
                previous = self._newest(name)
                now = utcnow()
                created = _to_info(previous).created if previous else now
                info = upload.to_info(name, created=created, modified=now)
                info = replace(info, created=_ms(info.created), modified=_ms(info.modified))
                # The files document goes in last: only then does the revision exist.
                self._files.insert_one({
                    "_id": files_id, "filename": name, "length": length,
                    "chunkSize": CHUNK_SIZE, "uploadDate": _ms(now),
                    "metadata": {"sha256": info.sha256, "content_type": info.content_type,
                                 "owner": info.owner, "meta": info.meta,
                                 "created": info.created, "modified": info.modified}})
            except BaseException:
                try:
                    self._chunks.delete_many({"files_id": files_id})  # what was written so far
                except PyMongoError as exc:  # database away: sweep_orphans gets them later
                    log.warning("gridfs: could not abort the upload of %r: %s", name, exc)
                raise
        try:
            with self._boundary:
                self._drop_older(name)
        except StoreError as exc:
            # The new revision is stored and is the one readers get; an old one
            # left behind is hidden and goes with the next replace or delete.
            log.warning("gridfs: stored %r but could not delete older revisions: %s", name, exc)
        return info, previous is None

    def _write_chunks(self, files_id: ObjectId, upload: Upload) -> int:
        """Store the body as ``CHUNK_SIZE`` chunks, ``BATCH`` per request; returns its length."""
        pending, batch, n, length = bytearray(), [], 0, 0
        for data in upload.chunks():
            pending += data
            length += len(data)
            while len(pending) >= CHUNK_SIZE:
                batch.append({"files_id": files_id, "n": n, "data": bytes(pending[:CHUNK_SIZE])})
                del pending[:CHUNK_SIZE]
                n += 1
                if len(batch) == BATCH:
                    self._chunks.insert_many(batch, ordered=True)
                    batch = []
        if pending:
            batch.append({"files_id": files_id, "n": n, "data": bytes(pending)})
        if batch:
            self._chunks.insert_many(batch, ordered=True)
        return length

    def _open(self, name: str, start: int, end: int | None) -> StoredFile:
        with self._boundary:
            for _ in range(5):
                doc = self._newest(name)
                if doc is None:
                    raise FileNotFound(f"No file named {name!r}.")
                grid_out = gridfs.GridOut(self._root, file_document=doc)
                grid_out.seek(start)  # GridOut seeks by chunk number: no reading from 0
                # Fetch the first chunk now: a replace may delete this revision
                # between the two queries, and then the newer one is the answer.
                try:
                    head = grid_out.readchunk() if start < doc["length"] else b""
                except CorruptGridFile:
                    grid_out.close()
                    continue
                return StoredFile(_to_info(doc), _Reader(grid_out, head), start=start, end=end)
        raise BackendUnavailable(f"{name!r} kept changing while being opened; try again.")

    def _info(self, name: str) -> FileInfo:
        with self._boundary:
            doc = self._newest(name)
        if doc is None:
            raise FileNotFound(f"No file named {name!r}.")
        return _to_info(doc)

    def _delete(self, name: str) -> None:
        with self._boundary:
            ids = [doc["_id"] for doc in self._files.find({"filename": name}, {"_id": 1})]
            if not ids:
                raise FileNotFound(f"No file named {name!r}.")
            for file_id in ids:
                try:
                    self._bucket.delete(file_id)
                except NoFile:
                    pass  # a concurrent replace or delete removed it

    def _list(self, prefix: str, after: str | None, limit: int) -> list[FileInfo]:
        # A filename range in index order (SecantusDB matches no compiled regex
        # on an indexed field; a range is what an index serves best anyway).
        low = {"$gt": after} if after is not None else {"$gte": prefix}
        cursor = self._files.find({"filename": {**low, "$lt": prefix + NAME_MAX}},
                                  sort=[("filename", pymongo.ASCENDING)],
                                  batch_size=limit + 2)
        # Revisions of one name come together; keep the newest of each, and
        # stop once the name after the last one wanted shows up.
        newest: dict[str, dict] = {}
        with self._boundary, cursor:
            for doc in cursor:
                name = doc["filename"]
                if name not in newest:
                    if len(newest) == limit:
                        break
                    newest[name] = doc
                elif _age_key(doc) > _age_key(newest[name]):
                    newest[name] = doc
        return [_to_info(doc) for doc in newest.values()]
