"""A database out of space or over its quota answers 507, as a full disk does
on the embedded store (tests/test_embedded.py): a message naming the database
and what to do, nothing of the upload left, and the server still serving.

CouchDB: the CouchDB-API test server on a small tmpfs (its LevelDB hits
ENOSPC for real). MongoDB: SecantusDB does keep its data on disk, but a full
disk makes its WiredTiger panic and every answer a bare "internal server
error" that does not say why, so the GridFS backend cannot (and must not) call
that 507; instead the server is made to refuse writes with mongod's own
OutOfDiskSpace error (``failCommand``, a test command), and the forms other
servers send (Atlas's space quota, ...) are fed to the backend directly.
The tests run as root, to mount the tmpfs.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path

import couchdb
import couchdb.http as couch_http
import gridfs
import pymongo
import pytest
from pymongo import monitoring
from pymongo.errors import BulkWriteError, OperationFailure, WriteError

from conftest import COUCH_PASSWORD, COUCH_USER, Backend, _ensure_couch_user, start_server
from fileserver.errors import BackendUnavailable, InsufficientStorage, StoreError, TooLarge
from fileserver_couchdb.files import CouchDBStore
from fileserver_gridfs import GridFSStore
from fileserver_gridfs.files import _Boundary
from servers import start_couchdb, start_mongodb

MiB = 1024 * 1024


@contextmanager
def small_disk(mount: Path, size: str):
    """A tmpfs of ``size`` at ``mount``, unmounted afterwards."""
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a small tmpfs: {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Take all of ``disk`` but ``leave`` bytes; deleting the file frees it again."""
    stat = os.statvfs(disk)
    ballast = disk / "ballast"
    with open(ballast, "wb") as out:
        left = stat.f_bavail * stat.f_frsize - leave
        while left > 0:
            left -= out.write(b"\0" * min(left, MiB))
    return ballast


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def names(server) -> list[str]:
    _, body = http("GET", server.url + "files/?format=json")
    return [f["name"] for f in json.loads(body)["files"]]


def assert_refused_for_space(server, name: str, data: bytes, database: str) -> str:
    """PUT ``name``: 507 naming the database and what to do; returns the message."""
    status, body = http("PUT", server.url + "files/" + name, data)
    assert status == 507, body
    error = json.loads(body)
    assert error["status"] == 507
    assert "out of space" in error["error"] and "nothing was stored" in error["error"]
    assert repr(database) in error["error"] and "Free disk space" in error["error"]
    status, body = http("GET", server.url + "files/" + name)
    assert status == 404, body
    return error["error"]


# -- CouchDB: a real full disk under the test server ------------------------------------


def test_couchdb_full_disk_is_507_and_nothing_is_half_written(tmp_path, monkeypatch):
    monkeypatch.delenv("COUCHDB_URL", raising=False)  # needs its own server, on a small disk
    with small_disk(tmp_path / "couch" / "data", "32m") as disk:
        couch = start_couchdb(tmp_path / "couch")
        try:
            _ensure_couch_user(couch)
            backend = Backend("couchdb", lambda root: {
                "url": couch.user_url(COUCH_USER, COUCH_PASSWORD), "database": "files"},
                admin_url=couch.admin_url)
            server = start_server(tmp_path / "srv", backend.config(tmp_path / "srv"))
            try:
                _full_couchdb_disk(server, disk, couchdb.Server(couch.admin_url)["files"])
            finally:
                server.stop()
        finally:
            couch.stop()


def _full_couchdb_disk(server, disk: Path, db: couchdb.Database) -> None:
    assert http("PUT", server.url + "files/small.bin", b"s" * 1000)[0] == 201
    ballast = fill(disk, leave=4 * MiB)
    message = assert_refused_for_space(server, "big.bin", os.urandom(16 * MiB), "files")
    assert "No space left on device" in message  # LevelDB's own words, passed on
    # A staging document the full disk kept from being deleted holds no content.
    staged = [row.doc for row in db.view("_all_docs", startkey="s:", endkey="s;",
                                         include_docs=True)]
    assert all(not doc.get("_attachments") for doc in staged)
    ballast.unlink()  # space is back: the same server stores again
    assert http("PUT", server.url + "files/after.bin", b"a" * 1000)[0] == 201
    assert http("GET", server.url + "files/after.bin") == (200, b"a" * 1000)
    assert http("GET", server.url + "files/small.bin") == (200, b"s" * 1000)
    assert names(server) == ["after.bin", "small.bin"]
    assert "Traceback" not in server.output()


# -- CouchDB: the answers of servers that cannot run here, fed to the backend -------------

COUCH_FULL = {
    # CouchDB >= 3.4 with [disk_monitor] enable refuses writes with 507 (docs:
    # config/disk-monitor; its test/elixir/test/disk_monitor.exs checks only the
    # status; the reason here is fabric's for a stale view).
    "couchdb-disk-monitor": (507, ("insufficient_storage", "not enough room to update index")),
    # CouchDB 3.x without it: the updater crashes on {badmatch,{error,enospc}}
    # (apache/couchdb#3975, #3978) and chttpd's catch-all error_info answers 500.
    "couchdb-enospc": (500, ("badmatch", "{error,enospc}")),
    "couchdb-enospc-plain": (500, ("error", "enospc")),
    # express-pouchdb over LevelDB (seen from the test server in the test above).
    "express-pouchdb": (500, ("bad_request", "IO error: /d/files/000003.log: No space left "
                                             "on device")),
}


@pytest.fixture
def couch_store():
    store = CouchDBStore("http://member:secret@127.0.0.1:9/", "files")  # never connects
    yield store
    store.close()


def couch_error(store: CouchDBStore, status: int, detail) -> Exception:
    with pytest.raises(Exception) as caught:
        with store._boundary():
            raise couch_http.ServerError((status, detail))
    return caught.value


@pytest.mark.parametrize("status, detail", COUCH_FULL.values(), ids=COUCH_FULL.keys())
def test_couchdb_answers_saying_full_are_insufficient_storage(couch_store, status, detail):
    error = couch_error(couch_store, status, detail)
    assert isinstance(error, InsufficientStorage) and error.status == 507
    assert "'files' at http://member:***@127.0.0.1:9/ is out of space" in str(error)
    assert detail[1] in str(error) and "secret" not in str(error)


def test_couchdb_other_server_errors_keep_their_mapping(couch_store):
    error = couch_error(couch_store, 500, ("internal_server_error", "No DB shards could be "
                                                                    "opened."))
    assert isinstance(error, BackendUnavailable) and error.status == 503


def test_couchdb_size_limit_stays_413_and_says_which_limit(couch_store):
    # max_attachment_size & co.: a limit, not a full disk -- free space would
    # not help, a smaller file or a higher limit does.
    error = couch_error(couch_store, 413, ("attachment_too_large", "content"))
    assert isinstance(error, TooLarge) and error.status == 413
    assert "'files'" in str(error) and "max_attachment_size" in str(error)


# -- GridFS: a real server refusing writes with mongod's OutOfDiskSpace -----------------


@pytest.fixture(scope="module")
def mongo(tmp_path_factory):
    """SecantusDB with test commands (``failCommand``), of its own."""
    workdir = tmp_path_factory.mktemp("mongo-full")
    (workdir / "secantusd.toml").write_text("[server]\nenable_test_commands = true\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MONGODB_URI", raising=False)  # needs test commands: its own server
        server = start_mongodb(workdir)
    yield server
    server.stop()


def refuse_inserts(client: pymongo.MongoClient, *, skip: int = 0) -> None:
    """The next insert after ``skip`` others fails with mongod's OutOfDiskSpace (14031)."""
    client.admin.command("configureFailPoint", "failCommand",
                         mode={"skip": skip, "times": 1},
                         data={"failCommands": ["insert"], "errorCode": 14031})


class ChunkInserts(monitoring.CommandListener):
    """Counts insert commands into ``<bucket>.chunks``, sent and refused."""

    def __init__(self):
        self.sent, self.refused, self._ids = 0, 0, set()

    def started(self, event):
        if event.command_name == "insert" and event.command["insert"].endswith(".chunks"):
            self._ids.add(event.request_id)
            self.sent += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        self.refused += event.request_id in self._ids


def test_gridfs_out_of_space_removes_the_chunks_already_written(mongo):
    inserts = ChunkInserts()
    client = pymongo.MongoClient(mongo.uri, tz_aware=True, tzinfo=timezone.utc,
                                 event_listeners=[inserts])
    store = GridFSStore(mongo.uri, database="fullstore", client=client)
    try:
        store._ensure_indexes()
        refuse_inserts(client, skip=2)  # two batches of chunks go in, the third is refused
        with pytest.raises(InsufficientStorage, match="'fullstore' at mongodb://127.0.0.1:"):
            store.put("big.bin", io.BytesIO(os.urandom(40 * gridfs.DEFAULT_CHUNK_SIZE)))
        assert (inserts.sent, inserts.refused) == (3, 1)
        assert client.fullstore["fs.chunks"].count_documents({}) == 0
        assert store.list().files == []
    finally:
        client.drop_database("fullstore")
        store.close()


def test_gridfs_documents_out_of_space_is_insufficient_storage(mongo):
    store = GridFSStore(mongo.uri, database="fulldocs")
    try:
        docs = store.documents()
        docs.declare("notes")
        refuse_inserts(store._client)
        with pytest.raises(InsufficientStorage, match="OutOfDiskSpace"):
            docs.create("notes", "a", {"x": 1})
        assert docs.get("notes", "a") is None
        docs.create("notes", "a", {"x": 1})  # the database has room again
    finally:
        store._client.drop_database("fulldocs")
        store.close()


def test_gridfs_out_of_space_is_507_and_the_server_goes_on(mongo, tmp_path):
    server = start_server(tmp_path / "srv", "[fileserver]\nbackend = gridfs\n\n"
                          f"[backend.gridfs]\nuri = {mongo.uri}\ndatabase = fullhttp\n")
    client = pymongo.MongoClient(mongo.uri)
    try:
        assert http("PUT", server.url + "files/small.bin", b"s" * 1000)[0] == 201
        refuse_inserts(client, skip=1)
        assert_refused_for_space(server, "big.bin", os.urandom(30 * gridfs.DEFAULT_CHUNK_SIZE),
                                 "fullhttp")
        files = [doc["_id"] for doc in client.fullhttp["fs.files"].find()]
        assert client.fullhttp["fs.chunks"].count_documents({"files_id": {"$nin": files}}) == 0
        assert http("PUT", server.url + "files/after.bin", b"a" * 1000)[0] == 201
        assert http("GET", server.url + "files/after.bin") == (200, b"a" * 1000)
        assert names(server) == ["after.bin", "small.bin"]
        assert "Traceback" not in server.output()
    finally:
        server.stop()
        client.drop_database("fullhttp")
        client.close()


# -- GridFS: the forms other servers send, fed to the backend --------------------------

ATLAS_QUOTA = "you are over your space quota, using 512 MB of 512 MB"  # M0/M2/M5, code 8000
MONGO_FULL = {
    "atlas-space-quota": OperationFailure(ATLAS_QUOTA, 8000, {
        "ok": 0, "errmsg": ATLAS_QUOTA, "code": 8000, "codeName": "AtlasError"}),
    "mongod-out-of-disk-space": OperationFailure("Failing command via 'failCommand' failpoint",
                                                 14031, {"ok": 0, "code": 14031,
                                                         "codeName": "OutOfDiskSpace"}),
    "mmapv1-quota": WriteError("quota exceeded", 12501, {"index": 0, "code": 12501,
                                                         "errmsg": "quota exceeded"}),
    "insert-many-write-error": BulkWriteError({"writeErrors": [{
        "index": 3, "code": 14031, "errmsg": "No space left on device"}], "nInserted": 3}),
}
MONGO_OTHER = {
    # Atlas's code 8000 also says other things; only the space quota is 507.
    "atlas-collection-limit": OperationFailure(
        "cannot create a new collection -- already using 500 collections of 500", 8000,
        {"ok": 0, "code": 8000, "codeName": "AtlasError",
         "errmsg": "cannot create a new collection -- already using 500 collections of 500"}),
    # SecantusDB's answer once its disk filled up: nothing says why.
    "secantusdb-full-disk": OperationFailure("internal server error", 1, {
        "ok": 0, "errmsg": "internal server error", "code": 1, "codeName": "InternalError"}),
}


def mongo_error(exc: Exception) -> Exception:
    with pytest.raises(Exception) as caught:
        with _Boundary("mongodb://fs:***@db.example:27017/", "files"):
            raise exc
    return caught.value


@pytest.mark.parametrize("exc", MONGO_FULL.values(), ids=MONGO_FULL.keys())
def test_gridfs_errors_saying_full_are_insufficient_storage(exc):
    error = mongo_error(exc)
    assert isinstance(error, InsufficientStorage) and error.status == 507
    assert "'files' at mongodb://fs:***@db.example:27017/ is out of space" in str(error)


@pytest.mark.parametrize("exc", MONGO_OTHER.values(), ids=MONGO_OTHER.keys())
def test_gridfs_other_errors_keep_their_mapping(exc):
    error = mongo_error(exc)
    assert type(error) is StoreError and error.status == 500
