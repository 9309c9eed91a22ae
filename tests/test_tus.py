"""tus resumable uploads (plugins/fileserver_tus) on every backend: the
protocol's answers, and tuspy (a client nobody here wrote) uploading a big
file in 5 MiB parts, killed mid-upload, the server killed too, and resumed
through the restarted server, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import unquote, urlsplit

from conftest import start_server
from fileserver_tus.parts import COLLECTION, PARTS, Parts, Resumable, new_id, part_folder

TUS = {"Tus-Resumable": "1.0.0"}
PART = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024
BIG = 200 * MiB
CHUNK = 5 * MiB


def request(url: str, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body, headers or {})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(url: str, length: int, **values: str) -> str:
    status, headers, body = request(url, "POST", "/uploads/", headers={
        **TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(**values)})
    assert status == 201, body
    assert headers["tus-resumable"] == "1.0.0" and "upload-expires" in headers
    return urlsplit(headers["location"]).path


def offset_of(url: str, path: str) -> int:
    status, headers, body = request(url, "HEAD", path, headers=TUS)
    assert status == 200, (status, body)
    return int(headers["upload-offset"])


def test_the_protocol_answers(live_server):
    url = live_server.url
    status, headers, _ = request(url, "OPTIONS", "/uploads/")
    assert status == 204 and headers["tus-version"] == "1.0.0"
    assert set(headers["tus-extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "checksum", "expiration"}
    assert "sha256" in headers["tus-checksum-algorithm"].split(",")

    status, headers, body = request(url, "POST", "/uploads/", headers={"Upload-Length": "3"})
    assert status == 400 and headers["tus-version"] == "1.0.0", body
    status, headers, body = request(url, "POST", "/uploads/", headers={
        "Tus-Resumable": "0.2.2", "Upload-Length": "3"})
    assert status == 412 and headers["tus-version"] == "1.0.0", body
    for bad in ({"Upload-Metadata": metadata(filename="a")},  # no length
                {"Upload-Length": "3"},  # no name
                {"Upload-Length": "3", "Upload-Metadata": metadata(filename="../a")},
                {"Upload-Length": "3", "Upload-Metadata": "filename %%%"}):
        status, _, body = request(url, "POST", "/uploads/", headers={**TUS, **bad})
        assert status == 400 and json.loads(body)["error"], (bad, body)
    status, _, _ = request(url, "POST", "/uploads/", headers={
        **TUS, "Upload-Length": "3", "Upload-Metadata": metadata(filename=".fileserver/x")})
    assert status == 403

    data = b"hello, resumable world"
    path = create(url, len(data), filename="greeting.txt", folder="inbox")
    assert offset_of(url, path) == 0
    status, _, _ = request(url, "PATCH", path, data[:5], {**TUS, "Upload-Offset": "0"})
    assert status == 415  # not application/offset+octet-stream
    status, headers, _ = request(url, "PATCH", path, data[:5], {**PART, "Upload-Offset": "0"})
    assert status == 204 and headers["upload-offset"] == "5"
    status, headers, _ = request(url, "PATCH", path, data[5:], {**PART, "Upload-Offset": "0"})
    assert status == 409 and headers["upload-offset"] == "5"  # not where it stands
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    status, _, body = request(url, "PATCH", path, data[5:10],
                              {**PART, "Upload-Offset": "5", "Upload-Checksum": f"sha256 {wrong}"})
    assert status == 460, body
    assert offset_of(url, path) == 5  # the part was discarded
    status, _, _ = request(url, "PATCH", path, data[5:] + b"!", {**PART, "Upload-Offset": "5"})
    assert status == 413 and offset_of(url, path) == 5  # past Upload-Length
    status, _, _ = request(url, "GET", "/files/inbox/greeting.txt")
    assert status == 404  # nothing appears before the last byte
    right = base64.b64encode(hashlib.sha256(data[5:]).digest()).decode()
    status, headers, _ = request(url, "PATCH", path, data[5:], {
        **PART, "Upload-Offset": "5", "Upload-Checksum": f"sha256 {right}"})
    assert status == 204 and headers["upload-offset"] == str(len(data))
    assert headers["content-location"].endswith("/files/inbox/greeting.txt")
    status, headers, body = request(url, "GET", "/files/inbox/greeting.txt")
    assert status == 200 and body == data and headers["content-type"].startswith("text/plain")
    status, _, body = request(url, "GET", path)  # done, and says so until it expires
    assert status == 200 and json.loads(body)["done"] is True
    assert offset_of(url, path) == len(data)

    path = create(url, 3, filename="greeting.txt", folder="inbox", exists="keep")
    status, headers, _ = request(url, "PATCH", path, b"two", {**PART, "Upload-Offset": "0"})
    assert status == 204  # both kept: the new one under the first free name
    assert unquote(urlsplit(headers["content-location"]).path) == "/files/inbox/greeting (1).txt"
    assert json.loads(request(url, "GET", path)[2])["name"] == "inbox/greeting (1).txt"
    assert request(url, "GET", "/files/inbox/greeting.txt")[2] == data

    # creation-with-upload, then termination
    status, headers, _ = request(url, "POST", "/uploads/", b"abc", {
        **PART, "Upload-Length": "10", "Upload-Metadata": metadata(filename="t.bin")})
    assert status == 201 and headers["upload-offset"] == "3"
    path = urlsplit(headers["location"]).path
    status, _, _ = request(url, "DELETE", path, headers=TUS)
    assert status == 204
    status, _, _ = request(url, "HEAD", path, headers=TUS)
    assert status == 404
    assert request(url, "GET", "/files/t.bin")[0] == 404

    path = create(url, 0, filename="empty.txt")  # nothing to send: done at once
    assert offset_of(url, path) == 0
    status, _, body = request(url, "GET", "/files/empty.txt")
    assert status == 200 and body == b""


def test_a_part_cut_off_keeps_what_was_stored(live_server):
    url, data = live_server.url, os.urandom(3 * MiB)
    path = create(url, len(data), filename="cut.bin")
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as raw:
        raw.sendall(f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                    "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode())
        raw.sendall(data[:2 * MiB])  # and the client goes away
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    while (offset := offset_of(url, path)) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 0 < offset <= 2 * MiB
    status, headers, _ = request(url, "PATCH", path, data[offset:],
                                 {**PART, "Upload-Offset": str(offset)})
    assert status == 204 and headers["upload-offset"] == str(len(data))
    assert request(url, "GET", "/files/cut.bin")[2] == data


CLIENT = """
import sys
from tusclient import client
uploader = client.TusClient(sys.argv[1]).uploader(
    sys.argv[2], chunk_size=int(sys.argv[3]), metadata={"filename": "big.bin"},
    **({"url": sys.argv[4]} if len(sys.argv) > 4 else {}))
if uploader.url is None:
    uploader.set_url(uploader.create_url())
print(uploader.url, flush=True)
uploader.upload()
print("done", flush=True)
"""


def run_client(server_url: str, source, upload_url: str | None = None) -> subprocess.Popen:
    args = [sys.executable, "-c", CLIENT, server_url + "uploads/", str(source), str(CHUNK)]
    return subprocess.Popen(args + ([upload_url] if upload_url else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_tuspy_killed_and_resumed_through_a_restarted_server(backend, tmp_path):
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as out:
        for _ in range(BIG // MiB):
            piece = os.urandom(MiB)
            digest.update(piece)
            out.write(piece)
    config = backend.config(tmp_path / "server")
    server = start_server(tmp_path / "server", config)
    try:
        client = run_client(server.url, source)
        path = urlsplit(client.stdout.readline().strip()).path
        assert path.startswith("/uploads/"), client.stderr.read()
        deadline = time.monotonic() + 120
        while offset_of(server.url, path) < 6 * CHUNK:  # a few parts in, then in the middle
            assert client.poll() is None and time.monotonic() < deadline, client.stderr.read()
            time.sleep(0.05)
        client.send_signal(signal.SIGKILL)
        client.wait()
        server.stop(signal.SIGKILL)
        server = start_server(tmp_path / "server", config)  # the same database, a new process
        offset = offset_of(server.url, path)
        assert 6 * CHUNK <= offset < BIG, offset  # what was stored survived both kills

        client = run_client(server.url, source, server.url.rstrip("/") + path)
        out, err = client.communicate(timeout=600)
        assert client.returncode == 0 and out.split()[-1] == "done", err
        assert offset_of(server.url, path) == BIG
        parts = urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        conn.request("GET", "/files/big.bin")
        answer = conn.getresponse()
        got = hashlib.sha256()
        while piece := answer.read(MiB):
            got.update(piece)
        assert answer.status == 200 and got.hexdigest() == digest.hexdigest()
        conn.close()
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]


def test_an_unfinished_upload_expires_and_leaves_nothing(store):
    documents = store.documents()
    documents.declare(COLLECTION)
    parts = Parts(store, documents, expiration=-1)  # expired as soon as it is made
    upload = parts.create(Resumable(id=new_id(), length=10, name="x.bin", owner=None,
                                    metadata="", content_type=None, exists="replace"))
    upload = parts.append(upload, io.BytesIO(b"abc"), None, finish=lambda whole: None)
    assert upload.offset == 3 and upload.expired
    store.put(part_folder(new_id()) + "0-stray", io.BytesIO(b"zz"))  # no upload names it
    assert len(store.list(PARTS, limit=100).files) == 2
    assert parts.sweep() == 1
    assert store.list(PARTS, limit=100).files == [] and parts.get(upload.id) is None
    assert not store.exists("x.bin")


def test_names_owners_roles_and_the_limit_apply_from_the_first_request(backend, tmp_path):
    config = backend.config(tmp_path / "srv").replace(
        "[fileserver]\n", "[fileserver]\nmax_upload_size = 1M\n", 1)
    server = start_server(tmp_path / "srv", config)
    ini = server.workdir / "fileserver.ini"
    for name, role in (("ann", "writer"), ("bob", "writer"), ("rita", "reader")):
        added = subprocess.run([sys.executable, "-m", "fileserver", "user", "--config", str(ini),
                                "add", name, "--role", role, "--password-stdin"],
                               input=f"{name}-password\n", capture_output=True, text=True,
                               timeout=60)
        assert added.returncode == 0, added.stderr

    def as_user(name: str) -> dict:
        token = base64.b64encode(f"{name}:{name}-password".encode()).decode()
        return {**TUS, "Authorization": f"Basic {token}"}

    def start(user: str | None, length: int, filename: str) -> tuple[int, dict, bytes]:
        headers = as_user(user) if user else dict(TUS)
        return request(server.url, "POST", "/uploads/", headers={
            **headers, "Upload-Length": str(length), "Upload-Metadata": metadata(
                filename=filename)})
    try:
        assert start(None, 3, "a.txt")[0] == 401
        assert start("rita", 3, "a.txt")[0] == 403  # a reader
        assert start("ann", 2 * MiB, "big.bin")[0] == 413  # over max_upload_size
        status, headers, _ = start("ann", 5, "anns.txt")
        assert status == 201
        path = urlsplit(headers["location"]).path
        status, _, _ = request(server.url, "PATCH", path, b"hello",
                               {**as_user("bob"), **PART, "Upload-Offset": "0"})
        assert status == 404  # not bob's upload
        status, _, _ = request(server.url, "PATCH", path, b"hello",
                               {**as_user("ann"), **PART, "Upload-Offset": "0"})
        assert status == 204
        listing = json.loads(request(server.url, "GET", "/files/?format=json",
                                     headers=as_user("ann"))[2])
        assert [f["owner"] for f in listing["files"] if f["name"] == "anns.txt"] == ["ann"]
        assert start("bob", 3, "anns.txt")[0] == 403  # ann's file: refused before any byte
    finally:
        server.stop()
