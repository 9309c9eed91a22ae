"""What only the CouchDB backend promises (the shared suites cover the rest).

Runs against the express-pouchdb test server from conftest (``couchdb_server``),
as the non-admin member user the shared suites use, or against COUCHDB_URL.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import couchdb
import pytest
import webtest

from conftest import BACKENDS, COUCH_PASSWORD, COUCH_USER, start_server
from fileserver import Settings, create_app
from fileserver.documents import CollectionSpec
from fileserver.features import all_collections
from fileserver.errors import BackendUnavailable, IncompleteUpload, NotSetUp, StoreError
from fileserver_couchdb.documents import couch_id, field_view
from fileserver_couchdb.files import ATTACHMENT, DESIGN, CouchDBStore, doc_id
from servers import start_couchdb

REFUSED = (couchdb.http.Unauthorized, couchdb.http.Forbidden)  # this server 401, CouchDB 403
MEMBER_AUTH = {"Authorization": "Basic " + base64.b64encode(
    f"{COUCH_USER}:{COUCH_PASSWORD}".encode()).decode()}


class FailingSource:
    """An upload body that breaks after ``fail_after`` bytes, like a client going away."""

    def __init__(self, data: bytes, fail_after: int):
        self._io, self.fail_after = io.BytesIO(data), fail_after

    def read(self, n: int = -1) -> bytes:
        if self._io.tell() >= self.fail_after:
            raise ConnectionResetError("client went away")
        return self._io.read(n)


@pytest.fixture
def couch(request):
    """The shared suites' CouchDB backend: fresh database, member user."""
    return BACKENDS["couchdb"](request)


@pytest.fixture
def couch_store(couch, tmp_path):
    store = couch.make(tmp_path)
    yield store
    store.close()


@pytest.fixture
def admin(couchdb_server) -> couchdb.Server:
    return couchdb.Server(couchdb_server.admin_url)


def ids(db: couchdb.Database) -> list[str]:
    return [row.id for row in db.view("_all_docs")]


def new_user(admin: couchdb.Server, prefix: str) -> tuple[str, str]:
    name, password = f"{prefix}-{uuid.uuid4().hex[:8]}", "pw:with@odd/chars"
    admin["_users"][f"org.couchdb.user:{name}"] = {"name": name, "password": password,
                                                   "roles": [], "type": "user"}
    return name, password


def member_url(couchdb_server) -> str:
    return couchdb_server.user_url(COUCH_USER, COUCH_PASSWORD)


def settings_for(options: dict) -> Settings:
    return Settings(backend="couchdb", backend_options={"couchdb": options})


# -- layout and permissions ----------------------------------------------------------


def test_document_layout_metadata_in_the_doc_content_as_its_one_attachment(couch_store, admin,
                                                                           couchdb_server):
    name = "photos/été 2024/_design/a b.txt"
    data = os.urandom(100_000)
    info, _ = couch_store.put(name, io.BytesIO(data), owner="alice", meta={"tags": ["x"]},
                              content_type="text/plain; charset=utf-8")
    db = admin[couch_store.database]
    assert ids(db) == [DESIGN, "f:" + name.encode("utf-8").hex()]  # no staging doc left
    doc = db[doc_id(name)]
    assert {k: v for k, v in doc.items() if not k.startswith("_")} == {
        "name": name, "size": len(data), "content_type": "text/plain; charset=utf-8",
        "sha256": hashlib.sha256(data).hexdigest(), "created": info.created.isoformat(),
        "modified": info.modified.isoformat(), "owner": "alice", "meta": {"tags": ["x"]}}
    assert list(doc["_attachments"]) == [ATTACHMENT]
    assert doc["_attachments"][ATTACHMENT]["length"] == len(data)
    body = db.get_attachment(doc_id(name), ATTACHMENT)
    assert body.read() == data
    # the design document keeps members from writing a file doc without its metadata
    member = couchdb.Server(member_url(couchdb_server))
    with pytest.raises(REFUSED):
        member[couch_store.database].save({"_id": doc_id("bare"), "name": "bare"})


def test_runs_as_a_non_admin_member(couch_store, couchdb_server, admin):
    url = urllib.parse.urlsplit(couchdb_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/_session", headers=MEMBER_AUTH)
    session = json.loads(conn.getresponse().read())
    assert session["userCtx"]["name"] == COUCH_USER
    assert "_admin" not in session["userCtx"]["roles"]
    security = admin[couch_store.database].security
    assert COUCH_USER in security["members"]["names"]
    couch_store.put("a/b", io.BytesIO(b"member data"))
    assert [f.name for f in couch_store.list().files] == ["a/b"]
    with couch_store.open("a/b") as f:
        assert f.read() == b"member data"
    couch_store.delete("a/b")
    assert couch_store.list().files == []


def test_a_non_member_or_a_wrong_password_is_refused_clearly(couch, couchdb_server, admin,
                                                             tmp_path):
    settings, options = couch.settings(tmp_path)  # a database whose only member is COUCH_USER
    outsider, password = new_user(admin, "outsider")
    for user, secret in [(outsider, password), (COUCH_USER, "wrong-password")]:
        url = couchdb_server.user_url(user, secret)
        with pytest.raises(StoreError) as refused:
            CouchDBStore.from_config(settings, {**options, "url": url})
        message = str(refused.value)
        assert "member" in message and f"http://{urllib.parse.quote(user)}:***@" in message
        assert urllib.parse.quote(secret, safe="") not in message and secret not in message


def test_init_db_through_the_cli_twice(couchdb_server, admin, tmp_path):
    database = f"cli-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "fileserver.ini"
    config.write_text(f"[fileserver]\nbackend = couchdb\n\n[backend.couchdb]\n"
                      f"url = {member_url(couchdb_server)}\n"
                      f"database = {database}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}

    def init_db(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fileserver", "init-db", "--backend",
                               "couchdb", "--config", str(config), *extra],
                              capture_output=True, text=True, timeout=60, env=env)

    # the member alone may not create a database: a clear refusal, no traceback
    refused = init_db()
    assert refused.returncode == 2, refused.stderr
    assert "--admin-url" in refused.stderr and "Traceback" not in refused.stderr
    assert COUCH_PASSWORD not in refused.stderr

    first = init_db("--admin-url", couchdb_server.admin_url)
    assert first.returncode == 0, first.stderr
    assert "created database" in first.stdout and f"added '{COUCH_USER}'" in first.stdout
    assert f":{couchdb_server.admin_password}@" not in first.stdout
    second = init_db("--admin-url", couchdb_server.admin_url)
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout and "up to date" in second.stdout
    assert "already a member" in second.stdout
    db = admin[database]
    assert db.security["members"]["names"] == [COUCH_USER]
    assert db[DESIGN]["validate_doc_update"]
    # and the member can now serve from it
    store = CouchDBStore.from_config(Settings(), {"url": member_url(couchdb_server),
                                                  "database": database})
    store.put("x", io.BytesIO(b"ok"))
    assert store.info("x").size == 2
    store.close()


# -- atomic replace ------------------------------------------------------------------


def test_concurrent_puts_to_one_name_leave_one_complete_winner(couch_store, admin,
                                                               couchdb_server):
    # two stores on one database, as two server processes would be
    other = CouchDBStore.from_config(Settings(), {"url": member_url(couchdb_server),
                                                  "database": couch_store.database})
    bodies = [bytes([i]) * 700_000 + os.urandom(1000) for i in range(8)]
    errors: list[Exception] = []

    def write(i: int) -> None:
        try:
            (couch_store, other)[i % 2].put("contended/one", io.BytesIO(bodies[i]))
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    with couch_store.open("contended/one") as f:
        final = f.read()
        assert final in bodies and f.info.sha256 == hashlib.sha256(final).hexdigest()
    db = admin[couch_store.database]
    assert ids(db) == [DESIGN, doc_id("contended/one")]
    assert db[doc_id("contended/one")]["_attachments"][ATTACHMENT]["length"] == len(final)


def test_failed_upload_keeps_the_old_file_and_leaves_no_staging_doc(couch_store, admin):
    couch_store.put("f", io.BytesIO(b"old content"))
    with pytest.raises(IncompleteUpload):
        couch_store.put("f", FailingSource(os.urandom(3_000_000), fail_after=2_500_000))
    with pytest.raises(IncompleteUpload):
        couch_store.put("new", io.BytesIO(b"short"), length=100)
    with couch_store.open("f") as f:
        assert f.read() == b"old content"
    assert [f.name for f in couch_store.list().files] == ["f"]
    assert ids(admin[couch_store.database]) == [DESIGN, doc_id("f")]


def test_staging_docs_are_never_listed_and_old_ones_are_swept(couch_store, admin,
                                                              couchdb_server):
    db = admin[couch_store.database]
    stale, live = "s:0000000001:left-by-a-crash", f"s:{int(time.time()):010d}:uploading"
    db.save({"_id": stale})
    db.save({"_id": live})
    couch_store.put("a", io.BytesIO(b"x"))
    assert [f.name for f in couch_store.list().files] == ["a"]
    CouchDBStore.from_config(Settings(), {"url": member_url(couchdb_server),
                                          "database": couch_store.database}).close()
    assert ids(db) == [DESIGN, doc_id("a"), live]


# -- reading -------------------------------------------------------------------------


def test_range_reads_the_right_bytes_when_the_server_answers_200(couch_store, couchdb_server):
    data = os.urandom(3 * 1024 * 1024 + 7)
    couch_store.put("big.bin", io.BytesIO(data))
    # What the server does with a Range request on the attachment (this one: 200).
    url = urllib.parse.urlsplit(couchdb_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", f"/{couch_store.database}/{doc_id('big.bin')}/{ATTACHMENT}",
                 headers={**MEMBER_AUTH, "Range": "bytes=2000000-2000099"})
    status = conn.getresponse().status
    conn.close()
    assert status in (200, 206)
    print(f"Range on an attachment -> {status}")

    with couch_store.open("big.bin", 2_000_000, 2_000_100) as f:
        assert f.read() == data[2_000_000:2_000_100]
    with couch_store.open("big.bin", 1_500_000) as f:
        assert f.read(10) == data[1_500_000:1_500_010]
        assert f.seekable()  # by a new request, skipping where Range is ignored
        assert f.seek(0, 2) == len(data)
        f.seek(3_000_000)
        assert f.read(100) == data[3_000_000:3_000_100]
        f.seek(1_600_000)
        assert f.read(5) == data[1_600_000:1_600_005]
    app = webtest.TestApp(create_app(Settings(), store=couch_store, catchall=False))
    res = app.get("/files/big.bin", headers={"Range": "bytes=1048576-2097151"}, status=206)
    assert res.body == data[1048576:2097152]
    res = app.get("/files/big.bin", headers={"Range": "bytes=-100"}, status=206)
    assert res.body == data[-100:]


# -- the documents contract's layout -------------------------------------------------


def test_documents_sit_beside_the_files_and_are_never_listed_as_files(couch_store, admin):
    docs = couch_store.documents()
    assert couch_store.documents() is docs  # one per store
    docs.declare("tiles", ["bucket"])
    couch_store.put("tiles/x.jpg", io.BytesIO(b"jpeg"))
    made = docs.create("tiles", "ab" * 4, {"bucket": 7, "meta": {"source": "x.png"}})
    db = admin[couch_store.database]
    cid = couch_id("tiles", "ab" * 4)
    assert cid == "d:tiles:" + ("ab" * 4).encode().hex()
    assert ids(db) == [DESIGN, cid, doc_id("tiles/x.jpg")]
    assert {k: v for k, v in db[cid].items() if k != "_id"} == {
        "_rev": made.version, "c": "tiles", "b": {"bucket": 7, "meta": {"source": "x.png"}}}
    name, view = field_view("tiles", "bucket")
    assert db[DESIGN]["views"][name] == view
    # the files' listing, sweeps and migrate walk the f: range only
    assert [f.name for f in couch_store.list().files] == ["tiles/x.jpg"]
    assert [f.name for f in couch_store.list("", delimiter="/").files] == []


def test_find_is_one_view_request(couch_store, monkeypatch):
    docs = couch_store.documents()
    docs.declare("tiles", ["bucket"])
    for i in range(12):
        docs.create("tiles", f"{i:064x}", {"bucket": i % 4})
    docs.count("tiles")  # builds the views
    session = couch_store._db.resource.session
    seen = []
    real = session.request

    def spy(method, url, body=None, *args, **kwargs):
        seen.append((method, url, body))
        return real(method, url, body, *args, **kwargs)

    monkeypatch.setattr(session, "request", spy)
    found = docs.find("tiles", "bucket", [3, 1, 1, 9])
    assert sorted(d.id for d in found) == [f"{i:064x}" for i in range(12) if i % 4 in (1, 3)]
    [(method, url, body)] = seen
    assert method == "POST" and "/_design/fileserver/_view/d_tiles_bucket?" in url
    assert "reduce=false" in url and "include_docs=true" in url
    assert (body if isinstance(body, dict) else json.loads(body)) == {"keys": [3, 1, 9]}


def test_an_old_design_document_serves_files_and_names_init_db(couch, admin, couchdb_server,
                                                               tmp_path, caplog):
    collections = [CollectionSpec("tiles", ("bucket",))]
    settings, options = couch.settings(tmp_path, collections=collections)
    db = admin[options["database"]]
    design = db[DESIGN]
    del design["views"]  # as written by init-db before the documents contract
    db.save(design)
    store = CouchDBStore.from_config(settings, options)
    try:
        docs = store.documents()
        docs.declare("tiles", ["bucket"])
        assert "init-db" in caplog.text and "d_tiles_bucket" in caplog.text
        store.put("a", io.BytesIO(b"files still work"))
        docs.create("tiles", "0" * 64, {"bucket": 1})
        assert docs.get("tiles", "0" * 64).body == {"bucket": 1}
        for call in (lambda: docs.count("tiles"), lambda: docs.find("tiles", "bucket", [1])):
            with pytest.raises(NotSetUp) as error:
                call()
            assert "init-db" in str(error.value) and error.value.status == 503
        lines = CouchDBStore.init_db(settings, options, admin_url=couchdb_server.admin_url,
                                     collections=collections)
        assert any(line.startswith(f"couchdb: wrote {DESIGN}") and "views.d_tiles_bucket" in line
                   for line in lines), lines
        assert docs.count("tiles") == 1 and [d.id for d in docs.find("tiles", "bucket", [1])] \
            == ["0" * 64]
        # a view from another version is replaced, and its old index cleaned up
        design = db[DESIGN]
        design["views"]["d_tiles_bucket"]["map"] = "function (doc) { emit(doc._id, null); }"
        db.save(design)
        lines = CouchDBStore.init_db(settings, options, admin_url=couchdb_server.admin_url,
                                     collections=collections)
        assert f"couchdb: wrote {DESIGN} (views.d_tiles_bucket)" in lines
        assert any("_view_cleanup" in line for line in lines)
        assert [d.id for d in docs.find("tiles", "bucket", [1])] == ["0" * 64]
        assert "up to date" in " ".join(CouchDBStore.init_db(
            settings, options, admin_url=couchdb_server.admin_url, collections=collections))
    finally:
        store.close()


# -- the server being away -----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_at_startup_fails_fast_with_the_password_masked(tmp_path):
    port = _closed_port()
    url = f"http://someone:s3cret-pw@127.0.0.1:{port}/"
    began = time.monotonic()
    with pytest.raises(BackendUnavailable) as error:
        CouchDBStore.from_config(Settings(), {"url": url, "database": "files"})
    assert time.monotonic() - began < 10
    assert f"http://someone:***@127.0.0.1:{port}/" in str(error.value)
    assert "s3cret-pw" not in str(error.value)

    config = tmp_path / "fileserver.ini"
    config.write_text(f"[fileserver]\nbackend = couchdb\n\n[backend.couchdb]\nurl = {url}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "fileserver", "serve", "--config",
                             str(config), "--port", "0"], capture_output=True, text=True,
                            timeout=30, env=env)
    assert time.monotonic() - began < 10
    assert result.returncode == 2
    assert f"someone:***@127.0.0.1:{port}" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_documents_on_an_unreachable_server_are_backend_unavailable():
    port = _closed_port()
    store = CouchDBStore(f"http://someone:s3cret-pw@127.0.0.1:{port}/", "files", timeout=5)
    docs = store.documents()

    def declare_then_pretend_it_worked():
        try:
            docs.declare("tiles", ["bucket"])
        finally:
            docs._views = {}  # as if declared: each call below reaches the server
            docs._specs["tiles"] = CollectionSpec("tiles", ("bucket",))
    calls = [declare_then_pretend_it_worked,
             lambda: docs.create("tiles", "a", {}), lambda: docs.delete("tiles", "a"),
             lambda: docs.get("tiles", "a"), lambda: docs.count("tiles"),
             lambda: docs.page("tiles"), lambda: docs.find("tiles", "bucket", [1, 2]),
             lambda: docs.replace("tiles", "a", {}, "1-x"), lambda: docs.expire("tiles")]
    for call in calls:
        with pytest.raises(BackendUnavailable) as error:
            call()
        assert f"someone:***@127.0.0.1:{port}" in str(error.value)
        assert "s3cret-pw" not in str(error.value)
    store.close()


def _request(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_database_outage_gives_503_and_recovers_by_itself(tmp_path):
    couch = start_couchdb(tmp_path / "couch")
    if couch.external:
        pytest.skip("COUCHDB_URL names a server these tests cannot stop")
    live = None
    try:
        admin = couchdb.Server(couch.admin_url)
        admin["_users"][f"org.couchdb.user:{COUCH_USER}"] = {
            "name": COUCH_USER, "password": COUCH_PASSWORD, "roles": [], "type": "user"}
        options = {"url": couch.user_url(COUCH_USER, COUCH_PASSWORD), "database": "outage"}
        CouchDBStore.init_db(settings_for(options), options, admin_url=couch.admin_url)
        live = start_server(tmp_path / "server", "[fileserver]\nbackend = couchdb\n\n"
                            "[backend.couchdb]\n" + "".join(f"{k} = {v}\n"
                                                           for k, v in options.items()))
        assert _request("PUT", live.url + "files/kept.txt", b"still here")[0] == 201

        port = urllib.parse.urlsplit(couch.url).port
        couch.stop()
        for method, path in [("GET", "files/kept.txt"), ("GET", "files/?format=json"),
                             ("PUT", "files/new.txt"), ("GET", "mosaic/tiles?format=json")]:
            status, body = _request(method, live.url + path, b"x" if method == "PUT" else None)
            assert status == 503, body
            message = json.loads(body)["error"]
            assert f"{COUCH_USER}:***@127.0.0.1:{port}" in message
            assert COUCH_PASSWORD not in message

        couch = start_couchdb(tmp_path / "couch", port=port)  # same data, same port
        assert _request("GET", live.url + "files/kept.txt") == (200, b"still here")
        assert _request("PUT", live.url + "files/new.txt", b"after")[0] == 201
        assert _request("GET", live.url + "files/new.txt") == (200, b"after")
        assert live.process.poll() is None
    finally:
        if live is not None:
            live.stop()
        couch.stop()
