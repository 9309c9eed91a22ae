"""What only the GridFS store promises: one revision per name, no orphan
chunks, its own bucket name, init-db, failing fast with a masked URI, and
riding out a database that goes away and comes back. Also its documents:
``<bucket>.docs.<name>`` collections queried through their indexes."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from datetime import datetime, timedelta, timezone

import gridfs
import pymongo
import pytest
from bson import ObjectId
from PIL import Image
from pymongo import monitoring

from conftest import start_server
from fileserver import Settings
from fileserver.config import mask_password as mask_uri
from fileserver.errors import BackendUnavailable, IncompleteUpload, TooLarge
from fileserver.features import all_collections
from fileserver.testing.store_contract import Source
from fileserver_gridfs import GridFSStore
from servers import start_mongodb

CHUNK = gridfs.DEFAULT_CHUNK_SIZE


@pytest.fixture
def options(mongodb_server, request):
    name = "gfs" + request.node.name.split("[")[0][-20:] + ObjectId().binary.hex()[-8:]
    return {"uri": mongodb_server.uri, "database": name, "bucket": "fs"}


def make(options, max_size=None) -> GridFSStore:
    settings = Settings(backend="gridfs", max_upload_size=max_size,
                        backend_options={"gridfs": options})
    GridFSStore.init_db(settings, options, collections=all_collections())
    return GridFSStore.from_config(settings, options)


@pytest.fixture
def db(mongodb_server, options):
    client = pymongo.MongoClient(mongodb_server.uri, serverSelectionTimeoutMS=10_000)
    yield client[options["database"]]
    client.drop_database(options["database"])
    client.close()


@pytest.fixture
def store(options):
    store = make(options)
    yield store
    store.close()


def put(store, name, data, **kw):
    return store.put(name, io.BytesIO(data), **kw)


def read(store, name, *args):
    with store.open(name, *args) as f:
        return f.read()


def chunk_count(data: bytes) -> int:
    return -(-len(data) // CHUNK)


# -- revisions -----------------------------------------------------------------------


def test_replace_leaves_exactly_one_revision(store, db):
    versions = [os.urandom(CHUNK * 3 + 5), b"short", os.urandom(CHUNK + 1)]
    for data in versions:
        put(store, "f", data)
    files = list(db["fs.files"].find({"filename": "f"}))
    assert len(files) == 1
    assert files[0]["length"] == len(versions[-1])
    assert db["fs.chunks"].count_documents({}) == chunk_count(versions[-1])
    assert read(store, "f") == versions[-1]


@pytest.mark.parametrize("name", ["f", "new"])
def test_failed_upload_keeps_the_old_file_and_no_chunks(options, db, name):
    store = make(options, max_size=3 * CHUNK)
    try:
        old = os.urandom(2 * CHUNK + 7)
        put(store, "f", old)
        with pytest.raises(IncompleteUpload):  # the client goes away mid-body
            store.put(name, Source(os.urandom(3 * CHUNK), fail_after=2 * CHUNK + 100))
        with pytest.raises(TooLarge):  # cut off mid-stream by the size limit
            put(store, name, os.urandom(3 * CHUNK + 1))
        assert read(store, "f") == old
        assert [f.name for f in store.list().files] == ["f"]
        assert db["fs.files"].count_documents({}) == 1
        assert db["fs.chunks"].count_documents({}) == chunk_count(old)
    finally:
        store.close()


def test_a_concurrent_second_revision_is_hidden_until_cleaned(store, db):
    """Between a writer's close() and its cleanup a name has two revisions:
    reads and listings show the newest, and pagination counts names once."""
    for name in ("a", "b", "c"):
        put(store, name, b"first " + name.encode())
    bucket = gridfs.GridFSBucket(db)
    newer = store.info("b")
    metadata = {"sha256": "0" * 64, "content_type": "text/plain", "owner": None, "meta": {},
                "created": newer.created, "modified": newer.modified + timedelta(seconds=1)}
    bucket.upload_from_stream("b", io.BytesIO(b"second"), metadata=metadata)
    assert db["fs.files"].count_documents({"filename": "b"}) == 2
    assert read(store, "b") == b"second"
    assert store.info("b").sha256 == "0" * 64
    pages, after = [], None
    while True:
        page = store.list(after=after, limit=1)
        pages.append([f.name for f in page.files])
        if page.next_after is None:
            break
        after = page.next_after
    assert pages == [["a"], ["b"], ["c"]]
    assert [f.size for f in store.list().files] == [len(b"first a"), len(b"second"),
                                                   len(b"first c")]
    put(store, "b", b"third")  # the next replace removes both older revisions
    assert db["fs.files"].count_documents({"filename": "b"}) == 1
    store.delete("b")
    assert db["fs.files"].count_documents({"filename": "b"}) == 0


def test_open_retries_when_a_replace_deletes_the_revision_it_found(store, monkeypatch):
    """The race between finding the newest revision and reading its first chunk."""
    put(store, "f", os.urandom(CHUNK + 1))
    stale = store._newest("f")
    put(store, "f", b"new")  # deletes the revision `stale` describes
    answers = iter([stale])
    real = store._newest
    monkeypatch.setattr(store, "_newest", lambda name: next(answers, None) or real(name))
    with store.open("f") as f:
        assert (f.read(), f.info.size) == (b"new", 3)


def test_range_reads_seek_instead_of_reading_from_the_start(options, db):
    """Opening at an offset asks the database for chunks from that one on."""
    listener = Commands()
    store = listened_store(options, listener)
    try:
        data = os.urandom(CHUNK * 6)
        put(store, "r", data)
        listener.commands.clear()
        start = CHUNK * 4 + 10
        with store.open("r", start, start + 100) as f:
            assert f.read() == data[start:start + 100]
        finds = [c["filter"] for c in listener.commands
                 if "find" in c and c["find"] == "fs.chunks"]
        assert finds and all(flt.get("n") == {"$gte": 4} for flt in finds)
    finally:
        store.close()


class Commands(monitoring.CommandListener):
    """Every command a client sends, in order."""

    def __init__(self):
        self.commands = []

    def started(self, event):
        self.commands.append(event.command)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def listened_store(options, listener) -> GridFSStore:
    client = pymongo.MongoClient(options["uri"], tz_aware=True, tzinfo=timezone.utc,
                                 event_listeners=[listener])
    return GridFSStore(options["uri"], database=options["database"],
                       bucket=options.get("bucket"), client=client)


# -- layout, housekeeping, init-db --------------------------------------------------


def test_bucket_option_names_the_collections(options, db):
    store = make({**options, "bucket": "images"})
    try:
        put(store, "cat.png", b"meow")
        assert read(store, "cat.png") == b"meow"
    finally:
        store.close()
    assert {"images.files", "images.chunks"} <= set(db.list_collection_names())
    assert "fs.files" not in db.list_collection_names()
    doc = db["images.files"].find_one({"filename": "cat.png"})
    assert set(doc["metadata"]) == {"sha256", "content_type", "owner", "meta", "created",
                                    "modified"}


def _object_id(moment: datetime) -> ObjectId:
    """An ObjectId from ``moment``, unique like a real one."""
    return ObjectId(int(moment.timestamp()).to_bytes(4, "big") + os.urandom(8))


def test_orphan_chunks_of_interrupted_uploads_are_swept(options, db):
    store = make(options)
    keep = os.urandom(CHUNK + 3)
    put(store, "intact", keep)
    store.close()
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(hours=3), now - timedelta(seconds=5)

    def chunks(files_id, *moments):
        db["fs.chunks"].insert_many([{"_id": _object_id(at), "files_id": files_id, "n": n,
                                      "data": b"x" * CHUNK} for n, at in enumerate(moments)])

    killed = _object_id(old)  # a process killed mid-upload, long ago
    chunks(killed, old, old, old)
    running = _object_id(now - timedelta(seconds=10))  # in progress in another process
    chunks(running, recent)
    slow = _object_id(old)  # a long upload, still sending
    chunks(slow, old, recent)

    settings = Settings(backend="gridfs", backend_options={"gridfs": options})
    lines = GridFSStore.init_db(settings, options)
    assert any("removed 3 chunks of 1 interrupted uploads" in line for line in lines), lines
    assert db["fs.chunks"].count_documents({"files_id": killed}) == 0
    assert db["fs.chunks"].count_documents({"files_id": running}) == 1
    assert db["fs.chunks"].count_documents({"files_id": slow}) == 2

    store = make(options)
    try:
        assert read(store, "intact") == keep
        assert store.sweep_orphans(older_than=timedelta(0)) == (2, 3)
        assert read(store, "intact") == keep
        assert db["fs.chunks"].count_documents({}) == chunk_count(keep)
    finally:
        store.close()


def run_cli(*args, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
    return subprocess.run([sys.executable, "-m", "fileserver", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def write_config(path, options) -> str:
    path.write_text("[fileserver]\nbackend = gridfs\n\n[backend.gridfs]\n"
                    + "".join(f"{k} = {v}\n" for k, v in options.items()))
    return str(path)


def test_init_db_command_creates_indexes_and_is_safe_to_repeat(tmp_path, options, db):
    config = write_config(tmp_path / "f.ini", options)
    first = run_cli("init-db", "--config", config)
    assert first.returncode == 0, first.stderr
    assert "created index filename_1_uploadDate_1 on fs.files" in first.stdout
    assert "created index files_id_1_n_1 on fs.chunks" in first.stdout
    assert "collections ready: accounts, login_failures, tiles, mosaic_jobs" in first.stdout
    again = run_cli("init-db", "--config", config, "--backend", "gridfs")
    assert again.returncode == 0, again.stderr
    assert "indexes already there" in again.stdout and "created" not in again.stdout
    assert any(ix["key"] == {"filename": 1, "uploadDate": 1}
               for ix in db["fs.files"].list_indexes())
    assert any(ix["key"] == {"files_id": 1, "n": 1} and ix.get("unique")
               for ix in db["fs.chunks"].list_indexes())
    assert any(ix["key"] == {"b.bucket": 1} for ix in db["fs.docs.tiles"].list_indexes())


# -- the documents contract's layout -------------------------------------------------


def test_documents_live_in_collections_of_the_bucket(options, db):
    images = make({**options, "bucket": "images"})
    other = make(options)  # bucket fs, same database: documents of its own
    try:
        docs = images.documents()
        assert images.documents() is docs
        docs.declare("tiles", ["bucket"])
        made = docs.create("tiles", "t1", {"bucket": 7, "meta": {"source": "a.png"}},
                           expires=2e9)
        assert db["images.docs.tiles"].find_one() == {
            "_id": "t1", "v": int(made.version), "b": {"bucket": 7, "meta": {"source": "a.png"}},
            "x": 2e9}
        keys = [ix["key"] for ix in db["images.docs.tiles"].list_indexes()]
        assert {"b.bucket": 1} in keys and {"x": 1} in keys
        theirs = other.documents()
        theirs.declare("tiles", ["bucket"])
        assert theirs.count("tiles") == 0 and theirs.get("tiles", "t1") is None
        # Files, listings and the orphan sweep do not see the documents.
        assert images.list().files == [] and images.sweep_orphans(timedelta(0)) == (0, 0)
    finally:
        images.close()
        other.close()


def _plans_using(explained, index_name: str) -> bool:
    """Whether an explain output (any server version's shape) names the index."""
    if isinstance(explained, dict):
        return explained.get("indexName") == index_name or any(
            _plans_using(v, index_name) for v in explained.values())
    if isinstance(explained, list):
        return any(_plans_using(v, index_name) for v in explained)
    return False


def test_find_is_one_query_on_the_field_index(options, db):
    make(options).close()  # init-db and startup: the indexes
    listener = Commands()
    store = listened_store(options, listener)
    try:
        docs = store.documents()
        docs.declare("tiles", ["bucket"])
        for n in range(60):
            docs.create("tiles", f"{n:064x}", {"bucket": n % 6})
        listener.commands.clear()
        found = docs.find("tiles", "bucket", [4, 1, 4, 99])
        assert {d.id for d in found} == {f"{n:064x}" for n in range(60) if n % 6 in (1, 4)}
        [command] = listener.commands  # one find, no getMore
        assert command["find"] == "fs.docs.tiles"
        assert command["filter"] == {"b.bucket": {"$in": [4, 1, 99]}}
        assert _plans_using(db["fs.docs.tiles"].find(command["filter"]).explain(), "b.bucket_1")
    finally:
        store.close()


def test_document_errors_are_backend_unavailable_with_a_masked_uri(options):
    live = pymongo.MongoClient(options["uri"])
    masked_uri = f"mongodb://fs:hunter2@127.0.0.1:{closed_port()}/"
    store = GridFSStore(masked_uri, database=options["database"], client=live)
    dead = pymongo.MongoClient(masked_uri.replace("fs:hunter2@", ""), serverSelectionTimeoutMS=200)
    try:
        docs = store.documents()
        docs.declare("tiles", ["bucket"])
        docs._database = dead[options["database"]]  # the database goes away
        calls = [lambda: docs.create("tiles", "a", {}), lambda: docs.delete("tiles", "a"),
                 lambda: docs.get("tiles", "a"), lambda: docs.count("tiles"),
                 lambda: docs.page("tiles"), lambda: docs.find("tiles", "bucket", [1, 2]),
                 lambda: docs.replace("tiles", "a", {}, "1"), lambda: docs.expire("tiles"),
                 lambda: docs.declare("others", ["x"])]
        for call in calls:
            with pytest.raises(BackendUnavailable) as caught:
                call()
            assert "mongodb://fs:***@127.0.0.1" in str(caught.value)
            assert "hunter2" not in str(caught.value)
    finally:
        store.close()
        dead.close()


# -- the database away ----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_mask_uri():
    assert mask_uri("mongodb://user:p%40ss@h1:1,h2:2/db?authSource=admin") == \
        "mongodb://user:***@h1:1,h2:2/db?authSource=admin"
    assert mask_uri("mongodb+srv://u:s@cluster.example/") == "mongodb+srv://u:***@cluster.example/"
    assert mask_uri("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"


@pytest.mark.parametrize("command", ["serve", "init-db"])
def test_unreachable_database_fails_fast_naming_the_masked_uri(tmp_path, command):
    port = closed_port()
    uri = f"mongodb://fs:hunter2@127.0.0.1:{port}/"
    config = write_config(tmp_path / "f.ini", {"uri": uri, "database": "x"})
    began = time.monotonic()
    result = run_cli(command, "--config", config, *(["--port", "0"] if command == "serve" else []))
    assert time.monotonic() - began < 10
    assert result.returncode == 2
    assert f"mongodb://fs:***@127.0.0.1:{port}/" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_unreachable_database_raises_backend_unavailable(options):
    with pytest.raises(BackendUnavailable, match=r"mongodb://a:\*\*\*@127\.0\.0\.1"):
        GridFSStore.from_config(Settings(), {**options,
                                             "uri": f"mongodb://a:b@127.0.0.1:{closed_port()}/"})


def one_tile_zip() -> bytes:
    image, archive = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(image, "PNG")
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("red.png", image.getvalue())
    return archive.getvalue()


def http(method, url, data=None):
    headers = {"Content-Type": "application/zip"} if "mosaic" in url and data else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_database_going_away_and_back_while_serving(tmp_path):
    if os.environ.get("MONGODB_URI"):
        pytest.skip("needs a database this test may stop: unset MONGODB_URI")
    mongo = start_mongodb(tmp_path / "mongo")
    port = int(mongo.uri.rsplit(":", 1)[1].split("/")[0])
    options = {"uri": mongo.uri, "database": "outage", "bucket": "fs"}
    server = start_server(tmp_path / "server",
                          "[fileserver]\nbackend = gridfs\n\n[backend.gridfs]\n"
                          + "".join(f"{k} = {v}\n" for k, v in options.items()))
    try:
        assert http("PUT", server.url + "files/kept.txt", b"still here")[0] == 201
        assert http("POST", server.url + "mosaic/tiles", one_tile_zip())[0] == 201
        mongo.stop()

        for method, path, data in [("GET", "files/kept.txt", None),
                                   ("PUT", "files/kept.txt", b"x" * 100_000),
                                   ("GET", "files/kept.txt", None),
                                   ("GET", "mosaic/tiles?format=json", None)]:
            began = time.monotonic()
            status, headers, body = http(method, server.url + path, data)
            assert status == 503, body
            assert headers["Content-Type"].startswith("application/json")
            error = json.loads(body)
            assert error["status"] == 503 and f"127.0.0.1:{port}" in error["error"]
            assert time.monotonic() - began < 10
        assert server.process.poll() is None

        mongo = start_mongodb(tmp_path / "mongo", port=port)  # same data, same port
        status, _, body = http("GET", server.url + "files/kept.txt")
        assert (status, body) == (200, b"still here")
        assert http("PUT", server.url + "files/new.txt", b"new")[0] == 201
        assert http("GET", server.url + "files/new.txt")[2] == b"new"
        assert json.loads(http("GET", server.url + "mosaic/tiles?format=json")[2])["count"] == 1
    finally:
        server.stop()
        mongo.stop()
