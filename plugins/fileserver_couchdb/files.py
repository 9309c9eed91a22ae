"""The CouchDB backend: one document per file, its content as the attachment.

Options (``[backend.couchdb]``): ``url`` (``http://user:password@host:5984/``,
a member of the database is enough; percent-encode ``:`` or ``@`` in the
password), ``database`` (default ``files``), ``timeout`` (seconds, default 60).
``fileserver init-db --backend couchdb --admin-url http://admin:pw@host:5984/``
creates the database, the design document and the ``_security`` membership.

Layout. The file ``name`` lives in the document ``"f:" + hex(utf-8(name))``::

    {"_id": "f:70686f746f732f612e706e67", "name": "photos/a.png", "size": 5,
     "content_type": "image/png", "sha256": "...", "created": "...",
     "modified": "...", "owner": null, "meta": {},
     "_attachments": {"content": {... "length": 5, "stub": true}}}

Hex ids keep ``_all_docs`` in name order (UTF-8 byte order is code point
order, and hex is plain ASCII, so every collation agrees), turn a name prefix
into an id prefix, never start with the reserved ``_`` and need no escaping
in URLs or in COPY's ``Destination`` header (which some CouchDB-API servers
do not unquote). Staging documents (``s:<unix time>:<uuid>``) and design
documents fall outside the ``f:`` range, so listings never see them.
``_design/fileserver`` holds a ``validate_doc_update`` that refuses any ``f:``
document without its metadata and its attachment, and the view ``tiles`` of
the mosaic's tile index (``capability("tile_index")``, see
``couchdb_tiles.py``): tile documents ``t:<64 hex>``, also outside the ``f:``
and ``s:`` ranges. Members may not write design documents, so ``init-db``
(as server admin) installs and updates it; a server started on a database
whose design document lacks the current view serves files as before; it
says at startup, and the tile index says on each query of the view, that
``init-db`` should run again.

Atomicity. ``put`` creates an empty staging document and streams the body
as its attachment (``PUT .../content?rev=``): CouchDB makes the new revision
only once the attachment is complete, so a failed upload adds nothing. Then
it writes the metadata, now known, sha256 included, into the staging
document and has the server ``COPY`` it onto the file's id with the ``_rev``
it read (``Destination: f:...?rev=R``). That copy is one document update:
readers see the old revision or the new one, each with its own content and
metadata. A 409 means another writer got there first: read the new ``_rev``
and copy again (the body is never re-sent). Readers fetch the attachment of
exactly the revision whose metadata they read (``?rev=``). The staging
document is deleted afterwards; one left by a crash is swept at a later
start once a day old.

A database out of space (an answer of 507, or one naming ENOSPC) is
``InsufficientStorage``; the staging document is deleted if the database
still lets it, else swept like a crash's.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import random
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import couchdb
import couchdb.http as couch_http

from fileserver.config import mask_password
from fileserver.options import Option, seconds, text
from fileserver.options import url as url_option
from fileserver.errors import (BackendUnavailable, Error, FileNotFound, InsufficientStorage,
                               StoreError, TooLarge)
from fileserver.store import CHUNK, FileInfo, Store, StoredFile, Upload, utcnow

from .documents import CouchDocuments, views_for

log = logging.getLogger(__name__)

ATTACHMENT = "content"
DESIGN = "_design/fileserver"
CHECK_TIMEOUT = 5  # seconds: startup and init-db fail fast on a dead server
STALE_STAGING = 24 * 3600
ATTEMPTS = 50
OLD_TILE_VIEW = "tiles"  # the first layout's tile view, removed by init-db
#: How an error answer says the disk or quota is full, besides status 507 (CouchDB
#: 3.4+'s [disk_monitor]): CouchDB 3.x puts the errno of a failed write in its 500
#: ({error,enospc}), express-pouchdb the LevelDB message ("IO error: ...: No space
#: left on device").
FULL_WORDS = ("enospc", "edquot", "no space left on device", "disk quota exceeded",
              "insufficient_storage", "insufficient storage")
VALIDATE = """function (newDoc, oldDoc, userCtx) {
  // A file document always carries its metadata and its one attachment.
  if (newDoc._deleted || newDoc._id.indexOf('f:') !== 0) { return; }
  var att = newDoc._attachments && newDoc._attachments.content;
  if (typeof newDoc.name !== 'string' || typeof newDoc.size !== 'number' ||
      typeof newDoc.sha256 !== 'string' || !att) {
    throw({forbidden: 'a file document needs name, size, sha256 and its content attachment'});
  }
}"""


def _design_missing(design: dict, specs=()) -> list[str]:
    """What the design document lacks or has outdated, by field name."""
    missing = []
    if design.get("validate_doc_update") != VALIDATE:
        missing.append("validate_doc_update")
    if design.get("language", "javascript") != "javascript":
        missing.append("language")
    views = design.get("views") or {}
    missing += [f"views.{name}" for name, view in views_for(specs).items()
                if views.get(name) != view]
    if OLD_TILE_VIEW in views:
        missing.append(f"views.{OLD_TILE_VIEW} (no longer used)")
    return missing


def doc_id(name: str) -> str:
    return "f:" + name.encode("utf-8").hex()


def _fields(info: FileInfo) -> dict[str, Any]:
    return {"name": info.name, "size": info.size, "content_type": info.content_type,
            "sha256": info.sha256, "created": info.created.isoformat(),
            "modified": info.modified.isoformat(), "owner": info.owner, "meta": info.meta}


def _info(doc: dict) -> FileInfo:
    return FileInfo(name=doc["name"], size=doc["size"], content_type=doc["content_type"],
                    sha256=doc["sha256"], created=datetime.fromisoformat(doc["created"]),
                    modified=datetime.fromisoformat(doc["modified"]), owner=doc.get("owner"),
                    meta=doc.get("meta") or {})


def _detail_text(detail) -> str:
    """An error answer's (error, reason) or raw body, for messages."""
    if isinstance(detail, tuple):
        return ": ".join(str(part) for part in detail if part)
    text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    return text if len(text) <= 300 else text[:300] + "..."


def _says_full(status: int, detail) -> bool:
    """Whether an error answer says the database ran out of space (not a size limit)."""
    return status == 507 or any(word in _detail_text(detail).lower() for word in FULL_WORDS)


def _reason(exc: couch_http.HTTPError) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, tuple):  # (error, reason) from a JSON body
        return str(detail[-1])
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


class _NoCache:
    """couchdb-python keeps GET bodies by ETag in a dict shared by all threads,
    without a lock; we need neither that memory nor that sharing."""

    def get(self, url):
        return None

    def put(self, url, response):
        pass

    def remove(self, url):
        pass


class _Attachment:
    """One revision's attachment, read as a stream up to ``stop``.

    Seeking only moves the position; the next read asks CouchDB for
    ``bytes=pos-(stop-1)``, so a seek costs nothing until data is wanted and
    waitress's seek-to-end-and-back costs no request. Where the server
    ignores Range (200), the fetch skips to the position, so seeking stays
    correct there too, only dearer. Connections are never pooled: an unread
    rest of a body must not be drained.
    """

    def __init__(self, store: "CouchDBStore", doc: dict, size: int, start: int, stop: int):
        self._store, self._doc, self._size, self._stop = store, doc, size, stop
        self._pos = self._at = start
        self._conn, self._response = store._fetch(doc, start, stop, size)
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        if self._pos >= self._stop:
            return b""
        if self._response is None or self._at != self._pos:
            self._drop()
            self._conn, self._response = self._store._fetch(
                self._doc, self._pos, self._stop, self._size)
            self._at = self._pos
        with self._store._boundary(self._doc["name"]):
            data = self._response.read(None if n is None or n < 0 else n)
        self._pos = self._at = self._pos + len(data)
        return data

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = max(0, {0: 0, 1: self._pos, 2: self._stop}[whence] + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self.closed = True
        self._drop()

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._conn.close()
            self._conn = self._response = None


class CouchDBStore(Store):
    """Files as CouchDB attachments; safe under waitress's threads (couchdb-python's
    connection pool has a lock, and attachments use a connection each)."""

    NAME = "couchdb"
    OPTIONS = {
        "url": Option(url_option("http", "https"), "http://127.0.0.1:5984/",
                      "http://user:password@host:5984/ (a member of the database is enough)"),
        "database": Option(text, "files", "the database's name"),
        "timeout": Option(seconds(0, 3600), 60.0, "seconds one request may take"),
    }

    @classmethod
    def _from_config(cls, settings, options):
        store = cls(options["url"], options["database"], max_size=settings.max_upload_size,
                    timeout=options["timeout"])
        store._check()
        return store

    def __init__(self, url: str, database: str = "files", *, max_size: int | None = None,
                 timeout: float = 60):
        super().__init__(max_size=max_size)
        if not url.endswith("/"):
            url += "/"
        parts = urlsplit(url)
        self.url, self.database, self.timeout = mask_password(url), database, timeout
        self.location = f"{self.url}{database}"
        self.user = unquote(parts.username) if parts.username else None
        self._plain_url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self._credentials = (self.user, unquote(parts.password or "")) if self.user else None
        self._db = self._database(timeout)
        self._lock = threading.Lock()
        self._documents = None  # see documents()
        # Attachments go through http.client directly (see _upload, _fetch).
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = f"{parts.path.rstrip('/')}/{quote(database, safe='')}/"
        self._headers = {}
        if self._credentials:
            token = base64.b64encode(":".join(self._credentials).encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def _server(self, timeout: float) -> couchdb.Server:
        session = couch_http.Session(timeout=timeout)
        session.cache = _NoCache()
        resource = couch_http.Resource(self._plain_url, session)
        resource.credentials = self._credentials  # exact, even with ':' or '@' in them
        return couchdb.Server(resource)

    def _database(self, timeout: float) -> couchdb.Database:
        server = self._server(timeout)
        return couchdb.Database(server.resource(self.database), self.database)

    # -- errors: translated here, once -------------------------------------------

    @contextmanager
    def _boundary(self, name: str | None = None) -> Iterator[None]:
        try:
            yield
        except Error:
            raise
        except couch_http.ResourceNotFound as exc:
            if _reason(exc) in ("missing", "deleted") and name is not None:
                raise FileNotFound(f"No file named {name!r}.") from None
            raise BackendUnavailable(
                f"The CouchDB database {self.database!r} at {self.url} does not exist "
                f"({_reason(exc)}); create it with `fileserver init-db --backend couchdb "
                "--admin-url http://ADMIN:PASSWORD@HOST:PORT/`.") from None
        except (couch_http.Unauthorized, couch_http.Forbidden) as exc:
            raise StoreError(
                f"CouchDB at {self.url} refused user {self.user!r} on database "
                f"{self.database!r} ({_reason(exc)}): check the user and password in "
                "[backend.couchdb] url, and that the user is a member of the database "
                "(`fileserver init-db --backend couchdb --admin-url ...` adds it).") from None
        except couch_http.ServerError as exc:
            status, detail = exc.args[0] if isinstance(exc.args[0], tuple) else (0, exc.args[0])
            if status == 413:
                raise self._too_large(detail) from None
            if _says_full(status, detail):
                raise self._full(detail) from None
            raise BackendUnavailable(f"CouchDB at {self.url} failed: {status} {detail}") from None
        except couch_http.HTTPError as exc:
            raise StoreError(f"CouchDB at {self.url}: {type(exc).__name__} "
                             f"({_reason(exc)})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise BackendUnavailable(f"CouchDB at {self.url} is unreachable "
                                     f"({type(exc).__name__}: {exc}).") from None

    def _too_large(self, detail) -> TooLarge:
        # A limit of CouchDB's configuration, not a lack of space: freeing
        # space would not help, a smaller file or a higher limit does.
        return TooLarge(
            f"The CouchDB database {self.database!r} at {self.url} refused the upload as too "
            f"large ({_detail_text(detail)}); nothing was stored. Send a smaller file, or raise "
            "CouchDB's limit ([couchdb] max_attachment_size, max_document_size or [chttpd] "
            "max_http_request_size).")

    def _full(self, detail) -> InsufficientStorage:
        return InsufficientStorage(
            f"The CouchDB database {self.database!r} at {self.url} is out of space "
            f"({_detail_text(detail)}); nothing was stored. Free disk space on the CouchDB "
            "server (or raise its quota), or delete files and compact the database.")

    def _check(self) -> None:
        """Startup: the database answers, with a short timeout; sweep stale staging."""
        db = self._database(CHECK_TIMEOUT)
        with self._boundary():
            db.info()
            design = db.get(DESIGN)
            if design is None:
                raise StoreError(f"The CouchDB database {self.database!r} at {self.url} has no "
                                 f"{DESIGN}; run `fileserver init-db --backend couchdb`.")
            outdated = _design_missing(design)
            if outdated:  # files still work; the mosaic's tile index will say so too
                log.warning("couchdb: %s in database %r at %s is outdated (%s); run `fileserver "
                            "init-db --backend couchdb --admin-url ...` as server admin",
                            DESIGN, self.database, self.url, ", ".join(outdated))
            cutoff = f"s:{int(time.time()) - STALE_STAGING:010d}"
            stale = [{"_id": row.id, "_rev": row.value["rev"], "_deleted": True}
                     for row in db.view("_all_docs", startkey="s:", endkey=cutoff, limit=1000)]
            if stale:
                db.update(stale)  # best effort; results unused (update() maps them by position)

    @classmethod
    def _init_db(cls, settings, options, *, admin_url, collections):
        url, database = options["url"], options["database"]
        user = unquote(urlsplit(url).username or "") or None
        admin = cls(admin_url or url, database)
        server, db, lines = admin._server(CHECK_TIMEOUT), admin._database(CHECK_TIMEOUT), []
        with admin._boundary():
            try:
                admin._init(server, db, user, lines, collections)
            except (couch_http.Unauthorized, couch_http.Forbidden) as exc:
                raise StoreError(f"CouchDB at {admin.url} refused to set up database "
                                 f"{database!r} ({_reason(exc)}): that needs a server admin; "
                                 "pass --admin-url http://ADMIN:PASSWORD@HOST:PORT/") from None
        return [f"couchdb: {line}" for line in lines]

    def _init(self, server: couchdb.Server, db: couchdb.Database, user: str | None,
              lines: list[str], collections) -> None:
        try:
            db.info()
            lines.append(f"database {self.database!r} already exists at {self.url}")
        except couch_http.ResourceNotFound:
            server.create(self.database)
            lines.append(f"created database {self.database!r} at {self.url}")
        design = db.get(DESIGN) or {"_id": DESIGN}
        outdated = _design_missing(design, collections)
        if outdated:
            design["validate_doc_update"] = VALIDATE
            design["language"] = "javascript"
            views = design.setdefault("views", {})  # views of others are kept
            dropped = views.pop(OLD_TILE_VIEW, None) is not None
            views.update(views_for(collections))
            db.save(design)
            lines.append(f"wrote {DESIGN} ({', '.join(outdated)})")
            if dropped or any(name.startswith("views.d_") for name in outdated):
                db.cleanup()  # drop the index files of views replaced (_view_cleanup)
                lines.append("removed the indexes of replaced views (_view_cleanup)")
        else:
            lines.append(f"{DESIGN} is up to date")
        if user is None:
            lines.append("the url names no user: _security left as it is")
            return
        security = db.security or {}
        security.setdefault("admins", {"names": [], "roles": []})
        members = security.setdefault("members", {"names": [], "roles": []})
        if user in members.setdefault("names", []):
            lines.append(f"{user!r} is already a member of {self.database!r}")
        else:
            members["names"].append(user)
            db.security = security
            lines.append(f"added {user!r} to the members of {self.database!r}")

    @classmethod
    def _missing(cls, settings, options):
        store = cls(options["url"], options["database"], timeout=options["timeout"])
        try:
            with store._boundary():  # other errors say what is wrong
                try:
                    store._db.info()
                except couch_http.ResourceNotFound:
                    return f"no database {store.location} (init-db makes it, with --admin-url)"
        finally:
            store.close()
        return None

    @classmethod
    def _open_documents(cls, settings, options):
        store = cls(options["url"], options["database"], timeout=options["timeout"])
        return CouchDocuments(store, owns_store=True)

    def documents(self):
        """Documents in this database (see documents.py), sharing this store's session."""
        with self._lock:
            if self._documents is None:
                self._documents = CouchDocuments(self)
            return self._documents

    def close(self) -> None:
        pool = self._db.resource.session.connection_pool  # idle keep-alive connections
        with pool.lock:
            for conns in pool.conns.values():
                for conn in conns:
                    conn.close()
            pool.conns.clear()

    # -- primitives -----------------------------------------------------------------

    def _get(self, name: str) -> dict:
        with self._boundary(name):
            return self._db[doc_id(name)]

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def _checked(self, response: http.client.HTTPResponse) -> http.client.HTTPResponse:
        """The response, or for a 4xx/5xx the matching couchdb-python error."""
        if response.status < 400:
            return response
        body = response.read()
        try:
            detail = json.loads(body)
            detail = (detail.get("error"), detail.get("reason"))
        except ValueError:
            detail = body
        errors = {401: couch_http.Unauthorized, 403: couch_http.Forbidden,
                  404: couch_http.ResourceNotFound, 409: couch_http.ResourceConflict,
                  412: couch_http.PreconditionFailed}
        if response.status in errors:
            raise errors[response.status](detail)
        raise couch_http.ServerError((response.status, detail))

    def _upload(self, stage: dict, upload: Upload) -> None:
        """Stream the body, in CHUNK pieces, as the attachment of the staging doc.

        Not through couchdb-python: it does stream a file-like body (chunked,
        8 KiB reads), but its Session retries a request once after a reset
        connection, which for a half-sent stream would store the rest alone.
        """
        # application/octet-stream: CouchDB then keeps it as is (no gzip for
        # text/*), so Range works and lengths are bytes; the real type is in the doc.
        headers = {**self._headers, "Content-Type": "application/octet-stream"}
        if upload.length is not None:
            headers["Content-Length"] = str(upload.length)  # else chunked
        conn = self._connection()
        try:
            try:
                conn.request("PUT", f"{self._path}{stage['_id']}/{ATTACHMENT}?rev="
                             f"{quote(stage['_rev'])}", upload.chunks(), headers)
            except OSError:
                # A server refusing early (401, 413) may close before the end.
                if conn.sock is not None:
                    try:
                        early = conn.getresponse()
                    except (OSError, http.client.HTTPException):
                        early = None
                    if early is not None:
                        self._checked(early)
                raise
            self._checked(conn.getresponse()).read()
        finally:
            conn.close()

    def _put(self, name: str, upload: Upload) -> tuple[FileInfo, bool]:
        target = doc_id(name)
        stage = {"_id": f"s:{int(time.time()):010d}:{uuid.uuid4().hex}"}
        with self._boundary():
            self._db.save(stage)  # empty first: see _drop
        try:
            with self._boundary():
                self._upload(stage, upload)
                stage = self._db[stage["_id"]]
                stored = stage["_attachments"][ATTACHMENT]["length"]
                if stored != upload.size:
                    raise StoreError(f"CouchDB at {self.url} stored {stored} of "
                                     f"{upload.size} bytes of {name!r}; nothing was stored.")
            now = utcnow()
            for attempt in range(ATTEMPTS):
                with self._boundary(name):
                    try:
                        current = self._db[target]
                    except couch_http.ResourceNotFound as exc:
                        if _reason(exc) not in ("missing", "deleted"):
                            raise
                        current = None
                    created = datetime.fromisoformat(current["created"]) if current else now
                    info = upload.to_info(name, created=created, modified=now)
                    if stage.get("created") != info.created.isoformat():
                        stage.update(_fields(info))
                        self._db.save(stage)
                    destination = target if current is None else f"{target}?rev={current.rev}"
                    try:
                        # COPY: couchdb-python's Database.copy wants a "rev" in the
                        # answer, which not every CouchDB-API server gives.
                        _, _, body = self._db.resource.session.request(
                            "COPY", self._db.resource(stage["_id"]).url,
                            headers={"Destination": destination},
                            credentials=self._credentials)
                        if body is not None:
                            body.read()  # hands the connection back to the pool
                        return info, current is None
                    except couch_http.ResourceConflict:
                        pass  # another writer replaced it first: copy over theirs
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            raise BackendUnavailable(f"{name!r} kept changing while being stored; try again.")
        finally:
            self._drop(stage)

    def _drop(self, stage: dict) -> None:
        """Delete the staging document (best effort: a leftover is swept later).

        After a failed upload a server may still store what it got as a new
        revision (the test server stores an empty attachment when the client
        goes away). Deleting the revision we know makes such a late write
        conflict; if it came first, the newest revision is deleted instead.
        """
        try:
            for _ in range(3):
                try:
                    self._db.delete(stage)
                    return
                except couch_http.ResourceConflict:
                    stage = self._db.get(stage["_id"])
                    if stage is None:
                        return
        except (couch_http.HTTPError, OSError, http.client.HTTPException):
            pass

    def _fetch(self, doc: dict, start: int, stop: int, size: int):
        """GET bytes [start, stop) of the attachment of exactly this revision:
        (connection, response positioned at start); (None, None) if empty."""
        if start >= stop:
            return None, None
        headers = dict(self._headers)
        if start > 0 or stop < size:
            headers["Range"] = f"bytes={start}-{stop - 1}"
        conn = self._connection()
        try:
            with self._boundary(doc["name"]):
                conn.request("GET", f"{self._path}{doc['_id']}/{ATTACHMENT}?rev="
                             f"{quote(doc['_rev'])}", headers=headers)
                response = self._checked(conn.getresponse())
                if response.status == 206:
                    if not (response.getheader("Content-Range") or "").startswith(
                            f"bytes {start}-"):
                        raise StoreError(f"CouchDB at {self.url} sent another range than "
                                         f"bytes={start}-{stop - 1}")
                else:  # 200: the whole attachment, Range ignored; skip to start
                    left = start
                    while left:
                        skipped = len(response.read(min(left, CHUNK)))
                        if not skipped:
                            raise StoreError(f"CouchDB at {self.url} sent a short attachment")
                        left -= skipped
        except BaseException:
            conn.close()
            raise
        return conn, response

    def _open(self, name: str, start: int, end: int | None) -> StoredFile:
        # A replace + compaction may drop the revision between reading the
        # document and fetching its attachment: then read the new one.
        for _ in range(5):
            doc = self._get(name)
            info = _info(doc)
            stop = info.size if end is None else min(end, info.size)
            try:
                raw = _Attachment(self, doc, info.size, start, stop)
            except FileNotFound:
                continue
            return StoredFile(info, raw, start=start, end=end)
        raise BackendUnavailable(f"{name!r} kept changing while being opened; try again.")

    def _info(self, name: str) -> FileInfo:
        return _info(self._get(name))

    def _delete(self, name: str) -> None:
        for attempt in range(ATTEMPTS):
            doc = self._get(name)
            with self._boundary(name):
                try:
                    self._db.delete(doc)
                    return
                except couch_http.ResourceConflict:
                    pass  # replaced meanwhile: delete the newer revision
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise BackendUnavailable(f"{name!r} kept changing while being deleted; try again.")

    def _list(self, prefix: str, after: str | None, limit: int) -> list[FileInfo]:
        # Ids are hex, so every id starting with doc_id(prefix) sorts below
        # doc_id(prefix) + "g"; `after` itself comes back first and is dropped.
        low, high = doc_id(after if after is not None else prefix), doc_id(prefix) + "g"
        if low >= high:
            return []  # CouchDB refuses a reversed key range
        with self._boundary():
            rows = list(self._db.view("_all_docs", startkey=low, endkey=high,
                                      inclusive_end=False, include_docs=True, limit=limit + 1))
        return [_info(row.doc) for row in rows if after is None or row.id != low][:limit]
