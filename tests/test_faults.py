"""Faults: a database server or the fileserver itself killed with SIGKILL mid-transfer.

couchdb, gridfs: each test starts a private database server with its data on
disk (never the session's shared one, nor COUCHDB_URL/MONGODB_URI: it gets
killed) and a real `fileserver serve` on it, kills the database during an
upload or a download, and checks that the fileserver answers 503 JSON
quickly meanwhile, stays up, recovers by itself once the database is back on
the same port, and lists no partial file.

Waitress reads a whole request body before the app sees it, so "during an
upload" is two different moments: while the client is still sending (the
store has not started; the upload is refused with 503 once it is complete),
and while the fileserver streams the received body into the database.

embedded: the fileserver process itself is killed while it writes a replace
of an existing file (a kill while the client sends a new file is
tests/test_e2e_curl.py::test_sigkill_during_upload_keeps_earlier_files; the
store's own crash safety is tests/test_embedded.py).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import COUCH_PASSWORD, COUCH_USER, Backend, LiveServer, _ensure_couch_user, \
    embedded_contents, start_server
from servers import Running, start_couchdb, start_mongodb

pytestmark = pytest.mark.timeout(300)

MiB = 1024 * 1024
BIG = 48 * MiB + 4321  # more than waitress (16 MiB) and the drivers buffer per transfer
OUTAGE_ANSWER_SECONDS = 10  # a request during the outage must be answered this fast
RECOVERY_SECONDS = 30  # after the database is back, the fileserver must be too


# -- a private database server this test may kill -------------------------------------


@dataclass
class Database:
    backend: str
    workdir: Path
    server: Running
    port: int
    #: how the fileserver's config names this database
    options: Callable[[], dict[str, str]]
    admin_url: str | None = None

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        self.server.process.send_signal(signal.SIGKILL)
        assert self.server.process.wait(15) == -signal.SIGKILL
        self.server.stop()  # only forgets the dead process

    def restart(self) -> None:
        start = start_couchdb if self.backend == "couchdb" else start_mongodb
        self.server = start(self.workdir, port=self.port)

    def fileserver_config(self, root: Path) -> str:
        return Backend(self.backend, lambda _: self.options(),
                       admin_url=self.admin_url).config(root)

    def writing_an_upload(self) -> bool:
        """True once the fileserver has begun storing a new upload in the database."""
        if self.backend == "gridfs":
            import pymongo  # the test extra

            client = pymongo.MongoClient(self.server.uri, serverSelectionTimeoutMS=2000)
            try:
                db = client["faults"]
                known = db["fs.files"].distinct("_id")
                return db["fs.chunks"].find_one({"files_id": {"$nin": known}}) is not None
            finally:
                client.close()
        import couchdb  # the test extra

        db = couchdb.Server(self.admin_url)["faults"]
        return bool(list(db.view("_all_docs", startkey="s:", endkey="s;", limit=1)))


@pytest.fixture(params=["couchdb", "gridfs"])
def database(request, tmp_path, monkeypatch):
    # Always a server of our own: an external one cannot be killed.
    monkeypatch.delenv("COUCHDB_URL", raising=False)
    monkeypatch.delenv("MONGODB_URI", raising=False)
    workdir = tmp_path / request.param
    if request.param == "couchdb":
        server = start_couchdb(workdir)
        _ensure_couch_user(server)
        db = Database("couchdb", workdir, server, urllib.parse.urlsplit(server.url).port,
                      lambda: {"url": db.server.user_url(COUCH_USER, COUCH_PASSWORD),
                               "database": "faults"}, admin_url=server.admin_url)
    else:
        server = start_mongodb(workdir)
        port = int(urllib.parse.urlsplit(server.uri).port)
        db = Database("gridfs", workdir, server, port,
                      lambda: {"uri": db.server.uri, "database": "faults", "bucket": "fs"})
    yield db
    db.server.stop()


@pytest.fixture
def fileserver(database, tmp_path):
    server = start_server(tmp_path / "server", database.fileserver_config(tmp_path / "server"))
    yield server
    server.stop()


# -- HTTP -----------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self):
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


def _connection(base: str, timeout: float = 60) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def _answer(conn: http.client.HTTPConnection, began: float) -> Answer:
    response = conn.getresponse()
    body = response.read()
    headers = {k.lower(): v for k, v in response.getheaders()}
    return Answer(response.status, headers, body, time.monotonic() - began)


def call(base: str, method: str, path: str, body: bytes | None = None,
         timeout: float = 60) -> Answer:
    conn = _connection(base, timeout)
    began = time.monotonic()
    try:
        conn.request(method, path, body, {"Accept": "application/json"})
        return _answer(conn, began)
    finally:
        conn.close()


def listing(base: str, timeout: float = 60) -> Answer:
    return call(base, "GET", "/files/?format=json&limit=1000", timeout=timeout)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Stored:
    """Files put before the fault: name -> sha256."""

    files: dict[str, str] = field(default_factory=dict)

    def put(self, base: str, name: str, data: bytes) -> None:
        answer = call(base, "PUT", f"/files/{name}", data)
        assert answer.status == 201, answer
        assert answer.json()["sha256"] == sha256(data)
        self.files[name] = sha256(data)

    def check_intact(self, base: str) -> None:
        names = {f["name"]: f["sha256"] for f in listing(base).json()["files"]}
        assert names == self.files, "the listing is not exactly the files stored before the fault"
        for name, digest in self.files.items():
            answer = call(base, "GET", f"/files/{name}")
            assert answer.status == 200, answer
            assert sha256(answer.body) == digest, f"{name} changed"


def earlier_files(base: str) -> Stored:
    stored = Stored()
    stored.put(base, "keep/note.txt", b"stored before the fault\n")
    stored.put(base, "keep/random.bin", os.urandom(3 * MiB + 17))
    return stored


# -- the outage and the recovery, the same for every fault ----------------------------


def assert_unavailable(answer: Answer, what: str) -> None:
    assert answer.status == 503, f"{what}: expected 503, got {answer}"
    error = answer.json()
    assert error["status"] == 503 and error["error"], error
    assert COUCH_PASSWORD not in error["error"]


def check_outage(fileserver: LiveServer) -> None:
    """While the database is dead: 503 JSON, quickly, and the process lives."""
    for path in ("/files/?format=json", "/files/keep/note.txt"):
        answer = call(fileserver.url, "GET", path, timeout=OUTAGE_ANSWER_SECONDS + 5)
        assert_unavailable(answer, f"GET {path} with the database down")
        assert answer.seconds < OUTAGE_ANSWER_SECONDS, f"GET {path} took {answer.seconds:.1f} s"
    assert fileserver.process.poll() is None, fileserver.output()


def check_recovery(database: Database, fileserver: LiveServer, stored: Stored,
                   absent: tuple[str, ...] = ()) -> None:
    """Restart the database on its port and data; the same fileserver process
    must serve again within RECOVERY_SECONDS, with exactly the earlier files."""
    database.restart()
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        answer = listing(fileserver.url, timeout=OUTAGE_ANSWER_SECONDS + 5)
        if answer.status == 200:
            break
        assert answer.status == 503, answer
        assert time.monotonic() < deadline, (
            f"still {answer.status} {RECOVERY_SECONDS} s after the database came back: {answer}")
        time.sleep(0.5)
    stored.check_intact(fileserver.url)
    for name in absent:
        assert call(fileserver.url, "GET", f"/files/{name}").status == 404, name
    # and it writes again, with no restart of the fileserver
    stored.put(fileserver.url, "after/recovery.txt", b"written after the recovery\n")
    for name in absent:  # the interrupted names are free
        stored.put(fileserver.url, name, b"now complete\n")
    stored.check_intact(fileserver.url)
    assert fileserver.process.poll() is None, fileserver.output()


def _start_put(url: str, name: str, length: int) -> http.client.HTTPConnection:
    """A PUT whose headers are sent and whose body is the caller's to send."""
    conn = _connection(url)
    conn.putrequest("PUT", "/files/" + name)
    conn.putheader("Content-Length", str(length))
    conn.putheader("Accept", "application/json")
    conn.endheaders()
    return conn


# -- the tests --------------------------------------------------------------------------


def test_database_killed_while_the_client_uploads(database, fileserver):
    stored = earlier_files(fileserver.url)
    body = os.urandom(BIG)
    conn = _start_put(fileserver.url, "interrupted.bin", len(body))
    try:
        conn.send(body[:4 * MiB])
        database.kill()
        check_outage(fileserver)
        began = time.monotonic()
        conn.send(body[4 * MiB:])
        # The store was streaming the body into the database, which is away: a
        # proper answer (the rest of the body is read and dropped), not a reset.
        answer = _answer(conn, began)
    finally:
        conn.close()
    assert_unavailable(answer, "the upload that was going on when the database died")
    assert answer.seconds < OUTAGE_ANSWER_SECONDS * 2, f"the answer took {answer.seconds:.1f} s"
    check_recovery(database, fileserver, stored, absent=("interrupted.bin",))


def test_database_killed_while_the_upload_is_written_into_it(database, fileserver):
    stored = earlier_files(fileserver.url)
    body = os.urandom(BIG)
    conn = _start_put(fileserver.url, "interrupted.bin", len(body))
    try:
        began = time.monotonic()
        conn.send(body)  # all of it: the fileserver now streams it into the database
        deadline = began + 30
        while not database.writing_an_upload():
            assert time.monotonic() < deadline, "the upload never reached the database"
        database.kill()
        answer = _answer(conn, began)
    finally:
        conn.close()
    # The store's write to the database fails: 503, never a stored partial file.
    assert_unavailable(answer, "the upload being written when the database died")
    check_outage(fileserver)
    check_recovery(database, fileserver, stored, absent=("interrupted.bin",))


def test_database_killed_during_a_download(database, fileserver):
    stored = earlier_files(fileserver.url)
    body = os.urandom(BIG)
    # Acknowledged a moment before the kill: it must survive it (SecantusDB
    # lost such files until the gridfs store journaled its commits).
    stored.put(fileserver.url, "big.bin", body)

    conn = _connection(fileserver.url)
    received = bytearray()
    cut_short = None
    try:
        conn.request("GET", "/files/big.bin")
        response = conn.getresponse()
        assert response.status == 200
        assert int(response.getheader("Content-Length")) == BIG
        received += response.read(MiB)
        database.kill()
        try:  # read(n) returns b"" when the connection closes before Content-Length
            while chunk := response.read(256 * 1024):
                received += chunk
        except ConnectionError as exc:
            cut_short = exc
    finally:
        conn.close()
    # Never a complete response with wrong bytes: a strict prefix, shorter than
    # the announced Content-Length (http.client's read(n) then returns b"") or
    # cut by a reset. BIG is more than the fileserver can hold ahead of the
    # client (waitress's 16 MiB, a driver's batch), so the cut must show.
    assert bytes(received) == body[:len(received)], (
        f"the download sent wrong bytes ({len(received)} of {BIG} received, {cut_short})")
    assert len(received) < BIG, "the download completed although the database was killed early"
    check_outage(fileserver)
    check_recovery(database, fileserver, stored)


def test_fileserver_killed_while_it_writes_a_replace(tmp_path):
    """embedded: SIGKILL while the store copies a replacing upload to disk."""
    root = tmp_path / "server"
    data = root / "embedded-data"
    config = Backend("embedded", lambda _: {"path": str(data)}).config(root)
    server = start_server(root, config)
    try:
        stored = earlier_files(server.url)
        old = os.urandom(BIG)
        stored.put(server.url, "big.bin", old)
        new = os.urandom(BIG)
        conn = _connection(server.url)
        conn.putrequest("PUT", "/files/big.bin")
        conn.putheader("Content-Length", str(len(new)))
        conn.endheaders()
        conn.send(new)  # all of it: the store writes it into tmp/ as it streams in
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size > MiB for p in (data / "tmp").glob("*.part")):
            assert time.monotonic() < deadline, "the replace never started writing"
            assert server.process.poll() is None, server.output()
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        conn.close()
    finally:
        server.stop()

    index = sqlite3.connect(data / "index.sqlite3")
    try:
        assert index.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        index.close()
    server = start_server(root, config)  # same data dir, same config
    try:
        stored.check_intact(server.url)  # the old big.bin, nothing partial listed
        contents = embedded_contents(data)
        assert contents["tmp"] == 0  # the partial copy is swept
        assert contents["blobs"] + contents["inline"] == len(stored.files), \
            "content no file points at was left"
    finally:
        server.stop()
