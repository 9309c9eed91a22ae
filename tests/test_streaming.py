"""Large request bodies stream into the store while they arrive
(fileserver/streaming.py), on every backend: byte for byte, a stalled body
is a 408 with nothing stored, and an early answer closes the connection."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from conftest import BACKENDS, start_server

MiB = 1 << 20


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def server(request, tmp_path_factory):
    backend = BACKENDS[request.param](request)
    workdir = tmp_path_factory.mktemp(f"streaming-{request.param}")
    config = backend.config(workdir).replace("[fileserver]\n",
                                             "[fileserver]\nbody_timeout = 2\n", 1)
    live = start_server(workdir, config)
    live.backend = request.param
    yield live
    live.stop()


def _connect(server) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def _reply(sock: socket.socket) -> tuple[int, dict, bytes]:
    response = http.client.HTTPResponse(sock, method="PUT")
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def _names(server) -> list[str]:
    with urllib.request.urlopen(server.url + "files/?format=json", timeout=30) as listing:
        return [f["name"] for f in json.loads(listing.read())["files"]]


def _stored(server, name: str) -> bytes:
    with urllib.request.urlopen(server.url + "files/" + name, timeout=60) as answer:
        return answer.read()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_large_bodies_arrive_whole(server, framing):
    data = os.urandom(9 * MiB + 12345)
    name = f"whole-{framing}.bin"
    with _connect(server) as sock:
        framing_header = (b"Content-Length: %d" % len(data) if framing == "length"
                          else b"Transfer-Encoding: chunked")
        sock.sendall(b"PUT /files/%s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % (name.encode(),
                                                                           framing_header))
        for i in range(0, len(data), 300_000):
            piece = data[i:i + 300_000]
            sock.sendall(piece if framing == "length" else _chunk(piece))
        if framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        status, _, body = _reply(sock)
    assert status == 201, body
    assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
    assert _stored(server, name) == data


def test_the_store_receives_a_large_body_before_it_ends(tmp_path):
    """The embedded store shows an upload in progress as tmp/<id>.part."""
    server = start_server(tmp_path, f"[fileserver]\ndata_dir = {tmp_path / 'data'}\n")
    try:
        data = os.urandom(6 * MiB)
        with _connect(server) as sock:
            sock.sendall(b"PUT /files/early.bin HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(data) + data[:3 * MiB])
            deadline = time.monotonic() + 20
            while not any(p.stat().st_size >= MiB for p in (tmp_path / "data" / "tmp").iterdir()):
                assert time.monotonic() < deadline, "nothing reached the store before the end"
                time.sleep(0.05)
            sock.sendall(data[3 * MiB:])
            status, _, body = _reply(sock)
        assert status == 201, body
        assert _stored(server, "early.bin") == data
    finally:
        server.stop()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_stalled_body_is_408_and_nothing_is_stored(server, framing):
    name = f"stalled-{framing}.bin"
    with _connect(server) as sock:
        framing_header = (b"Content-Length: %d" % (8 * MiB) if framing == "length"
                          else b"Transfer-Encoding: chunked")
        piece = os.urandom(2 * MiB)
        sock.sendall(b"PUT /files/%s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % (name.encode(),
                                                                           framing_header)
                     + (piece if framing == "length" else _chunk(piece)))
        started = time.monotonic()
        status, headers, body = _reply(sock)  # then nothing more is sent
        waited = time.monotonic() - started
    assert status == 408, body
    assert 1.5 < waited < 15, waited
    error = json.loads(body)
    assert error["status"] == 408 and "nothing was stored" in error["error"]
    assert headers.get("connection") == "close"
    assert name not in _names(server)


def test_an_answer_before_the_body_ends_closes_the_connection(server):
    with _connect(server) as sock:
        sock.sendall(b"PUT /files/.fileserver/taken.bin HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % (50 * MiB) + os.urandom(2 * MiB))
        status, headers, body = _reply(sock)  # refused (a private name) before the rest is read
        assert status == 403, body
        assert headers.get("connection") == "close"
        sock.sendall(os.urandom(4 * MiB))  # the rest is read and dropped: no reset
        assert sock.recv(1) == b""  # the server's side is shut
    with urllib.request.urlopen(server.url + "files/?format=json", timeout=30) as listing:
        assert listing.status == 200  # still serving
