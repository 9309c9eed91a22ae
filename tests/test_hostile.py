"""Hostile input against a real `fileserver serve`, on every backend.

One table of cases (``CASES``). Each sends exact bytes over a raw socket, so
no client library normalises ``..`` or ``%2e%2e`` away, and says which
answer it must get. After every case the same things must hold:

- the answer is a 4xx with a JSON ``error`` (a few cases document another
  answer in the table, e.g. an ignored Range is a 200 with the whole file);
  cases where the client hangs up expect no answer at all;
- the server still lists ``GET /files/`` (200) and logged no traceback;
- nothing was half-stored: the file listing, the tile library and the
  backend's raw storage (blob files, GridFS chunks, CouchDB documents) are
  what they were before the case (cases that store something safely, like a
  multipart ``filename="../../x"`` kept as ``x``, check it and remove it);
- the seeded ``keep.txt`` still downloads with its original bytes.

One server per backend for the module, with ``max_upload_size = 1M`` so the
limit cases are quick; waitress itself allows 1 MiB more for multipart framing.
"""

from __future__ import annotations

import base64
import configparser
import functools
import http.client
import io
import json
import select
import socket
import stat
import struct
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest
from PIL import Image

from conftest import BACKENDS, LiveServer, embedded_contents, start_server
from test_mosaic_tiles import forged_png

pytestmark = pytest.mark.timeout(120)

KiB, MiB = 1024, 1024 * 1024
LIMIT = MiB  # the server's max_upload_size
SLACK = MiB  # waitress's extra room for multipart framing (server.MULTIPART_SLACK)
TIMEOUT = 20  # seconds for any one answer
KEEP = b"the seeded file; every case must leave it exactly so\n" * 3
BOUNDARY = "hostile-boundary-7d3f"


# -- the wire -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


def _read_reply(sock: socket.socket, method: str) -> Reply:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    body = response.read()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def head(method: str, target: bytes, *headers: bytes, length: int | None = None) -> bytes:
    """A request head, byte for byte (``target`` is sent as is)."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close", *headers]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Server:
    """A running `fileserver serve` spoken to with raw sockets."""

    def __init__(self, live: LiveServer, backend: str, options: dict[str, str]):
        self.live, self.backend, self.options = live, backend, options
        parts = urlsplit(live.url)
        self.address = (parts.hostname, parts.port)

    def connect(self, timeout: float = TIMEOUT) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout)

    def send(self, data: bytes, method: str | None = None) -> Reply:
        method = method or data.split(b" ", 1)[0].decode()
        with self.connect() as sock:
            sock.sendall(data)
            return _read_reply(sock, method)

    def request(self, method: str, target: bytes | str, body: bytes = b"",
                *headers: bytes) -> Reply:
        if isinstance(target, str):
            target = target.encode()
        length = len(body) if method in ("PUT", "POST") else None
        return self.send(head(method, target, *headers, length=length) + body, method)

    def hang_up(self, data: bytes) -> None:
        """Send ``data`` (a request cut short) and close: no answer is read."""
        with self.connect() as sock:
            sock.sendall(data)
        time.sleep(0.3)  # let the server see the close before the checks look

    # -- what the checks compare --

    def files(self) -> set[tuple[str, int, str]]:
        reply = self.request("GET", "/files/?format=json&limit=1000")
        assert reply.status == 200, reply
        return {(f["name"], f["size"], f["sha256"]) for f in reply.json()["files"]}

    def tiles(self) -> tuple[int, set[str]]:
        reply = self.request("GET", "/mosaic/tiles?limit=1000&format=json")
        assert reply.status == 200, reply
        body = reply.json()
        return body["count"], {t["id"] for t in body["tiles"]}

    def raw_storage(self) -> dict[str, int]:
        """Counts below the store's API, where a half-written upload would hide."""
        if self.backend == "embedded":
            return embedded_contents(Path(self.options["path"]))
        if self.backend == "gridfs":
            import pymongo  # the test extra

            with pymongo.MongoClient(self.options["uri"]) as client:
                db = client[self.options["database"]]
                bucket = self.options.get("bucket", "fs")
                return {"files": db[f"{bucket}.files"].count_documents({}),
                        "chunks": db[f"{bucket}.chunks"].count_documents({})}
        url = self.options["url"].rstrip("/") + "/" + self.options["database"]
        with urllib.request.urlopen(_with_auth(url), timeout=TIMEOUT) as answer:
            info = json.load(answer)
        return {"docs": info["doc_count"]}

    def snapshot(self) -> dict:
        return {"files": self.files(), "tiles": self.tiles(), "raw": self.raw_storage()}

    def log(self) -> str:
        return self.live.output()


def _with_auth(url: str) -> urllib.request.Request:
    parts = urlsplit(url)
    plain = url.replace(f"{parts.username}:{parts.password}@", "")
    request = urllib.request.Request(plain)
    token = base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    return request


# -- building hostile bodies ------------------------------------------------------------


def form(*parts: tuple[bytes, bytes], boundary: str = BOUNDARY, end: bool = True) -> bytes:
    """A multipart body; each part is (its header lines, its body)."""
    out = b""
    for headers, body in parts:
        out += b"--" + boundary.encode() + b"\r\n" + headers + b"\r\n\r\n" + body + b"\r\n"
    return out + (b"--" + boundary.encode() + b"--\r\n" if end else b"")


def file_part(filename: bytes, body: bytes, name: bytes = b"file") -> tuple[bytes, bytes]:
    return (b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"',
            body)


MULTIPART = f"Content-Type: multipart/form-data; boundary={BOUNDARY}".encode()


def png(colour=(255, 0, 0), size=(16, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def noise_jpeg(size=(64, 64)) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 80).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def make_zip(entries, level: int = 6) -> bytes:
    """``entries``: (name or ZipInfo, bytes); names are kept verbatim (``../x``, ``/x``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in entries:
            info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out.getvalue()


@functools.cache
def ratio_bomb() -> bytes:
    """One entry inflating 1000:1 to 50 MiB."""
    return make_zip([("bomb.png", b"\0" * (50 * MiB))], level=9)


@functools.cache
def total_bomb() -> bytes:
    """100 entries of 1 MiB of zeros each: no single entry is big enough for the
    per-entry ratio rule, together 100 MiB from 110 KB."""
    return make_zip([(f"z{i}.png", b"\0" * MiB) for i in range(100)], level=9)


@functools.cache
def lying_bomb() -> bytes:
    """An entry that inflates to 20 MiB while its headers claim 1 KiB."""
    data = bytearray(make_zip([("liar.png", b"\0" * (20 * MiB))], level=9))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        data[at:at + 4] = struct.pack("<I", KiB)
    return bytes(data)


@functools.cache
def many_entries(count: int) -> bytes:
    return make_zip([(f"{i:x}", b"x") for i in range(count)], level=0)


def symlink_entry(name: str, target: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode bits below count
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def encrypted(archive: bytes) -> bytes:
    """The archive with its (one) entry flagged as encrypted, as zip tools write it."""
    data = bytearray(archive)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x1
    return bytes(data)


NOT_AN_IMAGE = b"#!/bin/sh\necho this is no picture\n" * 20


@functools.cache
def truncated_jpeg() -> bytes:
    return noise_jpeg()[:600]


# -- the cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    #: sends the hostile request(s); the replies, or None when the client hung up
    send: Callable[[Server], Reply | list[Reply] | None]
    #: allowed statuses; () when no answer is expected
    expect: tuple[int, ...] = (400,)
    #: what else must be true (and what to clean up, for cases that store safely)
    check: Callable[[Server, list[Reply]], None] | None = None


def bad_name(case_id: str, target: bytes, expect: tuple[int, ...] = (400,)) -> Case:
    """PUT, GET and DELETE of a hostile name under /files/: each refused."""
    def send(server: Server) -> list[Reply]:
        return [server.request(method, b"/files/" + target, b"payload")
                for method in ("PUT", "GET", "DELETE")]
    return Case(case_id, send, expect)


def put(target: bytes, body: bytes = b"payload", *headers: bytes) -> Callable:
    return lambda server: server.request("PUT", target, body, *headers)


def post_form(target: bytes, body: bytes, *headers: bytes) -> Callable:
    return lambda server: server.request("POST", target, body, *(headers or (MULTIPART,)))


def get(target: bytes, *headers: bytes) -> Callable:
    return lambda server: server.request("GET", target, b"", *headers)


def tiles_zip(data: bytes | Callable[[], bytes]) -> Callable:
    return lambda server: server.request("POST", "/mosaic/tiles", data() if callable(data) else data,
                                         b"Content-Type: application/zip")


def tiles_form(*parts: tuple[bytes, bytes]) -> Callable:
    return lambda server: server.request("POST", "/mosaic/tiles", form(*parts), MULTIPART)


def mosaic(*parts: tuple[bytes, bytes], query: str = "") -> Callable:
    return lambda server: server.request("POST", "/mosaic" + query, form(*parts), MULTIPART)


def field(name: str, value: str) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"'.encode(), value.encode()


def skipped(report: dict) -> dict[str, str]:
    """entry -> "reason (detail)", from the report's groups of skipped entries."""
    return {e["entry"]: f"{reason} ({e['detail']})"
            for reason, group in report["skipped"].items() for e in group["entries"]}


def reported(entry: str, words: str) -> Callable:
    """The upload was answered with a report: nothing added, and ``entry``
    skipped with a reason containing ``words``."""
    def check(server: Server, replies: list[Reply]) -> None:
        report = replies[0].json()
        assert report["added"] == 0 and report["tiles"] == [], report
        assert words in skipped(report).get(entry, ""), (entry, report)
    return check


def skipped_all(count: int, words: str) -> Callable:
    def check(server: Server, replies: list[Reply]) -> None:
        report = replies[0].json()
        groups = report["skipped"]
        assert report["added"] == 0 and list(groups) == [words], list(groups)
        assert groups[words]["count"] == len(groups[words]["entries"]) == count
    return check


def stored_as(name: str, body: bytes) -> Callable:
    """A multipart filename with a path: only its last segment is kept."""
    def check(server: Server, replies: list[Reply]) -> None:
        assert [f["name"] for f in replies[0].json()] == [name]
        assert server.request("GET", "/files/" + name).body == body
        assert server.request("DELETE", "/files/" + name).status == 204
    return check


def added_as_tile(label: str) -> Callable:
    """An entry path like ``../x.png`` is a label, never a path: the image
    becomes a tile (its image kept by the mosaic) and nothing else is written."""
    def check(server: Server, replies: list[Reply]) -> None:
        report = replies[0].json()
        assert report["added"] == 1 and report["skipped"] == {}, report
        tile_id = report["tiles"][0]
        names = {f[0] for f in server.files()}
        assert not any(label.lstrip("/.") in n for n in names)
        assert server.request("GET", f"/mosaic/tiles/{tile_id}/image").status == 200
        listed = server.request("GET", "/mosaic/tiles?limit=1000&format=json").json()["tiles"]
        assert {t["id"]: t["meta"]["source"] for t in listed}[tile_id] == label
        assert server.request("DELETE", f"/mosaic/tiles/{tile_id}").status == 204
    return check


def first_part_kept(server: Server, replies: list[Reply]) -> None:
    """A later part over the limit: the earlier, complete file stays and the
    error names it; the oversized one is not stored at all."""
    assert "Already stored from this request: small.txt" in replies[0].json()["error"]
    assert server.request("GET", "/files/small.txt").body == b"small and whole"
    assert server.request("GET", "/files/huge.bin").status == 404
    assert server.request("DELETE", "/files/small.txt").status == 204


def whole_file(server: Server, replies: list[Reply]) -> None:
    """A Range the server ignores: the whole file once, never multipart."""
    reply = replies[0]
    assert reply.body == KEEP and "content-range" not in reply.headers
    assert not reply.headers["content-type"].startswith("multipart/")


def unsatisfiable(server: Server, replies: list[Reply]) -> None:
    assert replies[0].headers["content-range"] == f"bytes */{len(KEEP)}"


def chunked(pieces, end: bool = True) -> bytes:
    out = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces)
    return out + (b"0\r\n\r\n" if end else b"")


def refused_while_streaming(server: Server, target: bytes, total: int) -> Reply:
    """Stream a chunked body of ``total`` bytes; the answer must come before
    it is all sent (the server refuses while it streams in)."""
    piece = b"\x07" * (64 * KiB)
    with server.connect() as sock:
        sock.sendall(head("PUT", target, b"Transfer-Encoding: chunked"))
        sent = 0
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is in
            try:
                sock.sendall(chunked([piece], end=False))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        assert sent < total, f"the server read all {total} bytes before answering"
        return _read_reply(sock, "PUT")


def over_limit_before_body(server: Server) -> Reply:
    """Only the head, announcing 5 MiB: the 413 must come without the body."""
    with server.connect(timeout=5) as sock:
        sock.sendall(head("PUT", b"/files/announced.bin", length=5 * MiB))
        return _read_reply(sock, "PUT")


def _trickling(server: Server, heads: list[bytes], drip: bytes, pause: float, what: str):
    """A connection per head, each sent ``drip`` now and then, while a normal
    client must still be answered quickly; none of them may be answered."""
    slow = []
    try:
        for data in heads:
            sock = server.connect()
            sock.sendall(data)
            slow.append(sock)
        for _ in range(3):
            for sock in slow:
                sock.sendall(drip)
            started = time.monotonic()
            probe = server.request("GET", "/files/keep.txt")
            elapsed = time.monotonic() - started
            assert probe.status == 200 and probe.body == KEEP
            assert elapsed < 3, f"a normal request took {elapsed:.1f} s beside {len(heads)} {what}"
            time.sleep(pause)
        for sock in slow:  # none of them may have been answered
            assert not select.select([sock], [], [], 0)[0] or sock.recv(1) == b""
    finally:
        for sock in slow:
            sock.close()


def slow_clients(count: int) -> Callable:
    """``count`` connections trickling a request head a byte at a time (slowloris)."""
    def send(server: Server) -> None:
        _trickling(server, [b"GET /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "] * count,
                   b"z", 0.2, "slow heads")
    return send


def slow_bodies(count: int) -> Callable:
    """``count`` chunked uploads sending a byte a second: at most half the
    worker threads wait for such bodies, so a GET still finds one; closed
    unfinished, none of them stores anything."""
    def send(server: Server) -> None:
        heads = [b"PUT /files/slow-%d.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" % i for i in range(count)]
        _trickling(server, heads, chunked([b"z"], end=False), 1, "slow uploads")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "slow-0.bin" not in server.log():
            time.sleep(0.1)  # the uploads that streamed end (their clients went away)
    return send


def busy_while_ingesting(server: Server) -> Reply:
    """Thousands of tiny entries: a report, and the server answers others meanwhile."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(tiles_zip(many_entries(5000))(server)))
    worker.start()
    latencies = []
    while worker.is_alive():
        started = time.monotonic()
        assert server.request("GET", "/files/keep.txt").body == KEEP
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    worker.join()
    assert max(latencies, default=0) < 3, f"a request waited {max(latencies):.1f} s"
    return result[0]


LONG = b"a" * 1100
CASES: list[Case] = [
    # -- names: traversal, encodings, control characters, length --
    bad_name("dotdot", b".."),
    bad_name("dotdot-inside", b"a/../keep.txt"),
    bad_name("dotdot-encoded", b"%2e%2e"),
    bad_name("dotdot-mixed-case-encoded", b"%2E%2e/x"),
    bad_name("dotdot-encoded-slash", b"..%2fkeep.txt"),
    bad_name("encoded-slashes-climb", b"a%2f..%2f..%2fkeep.txt"),
    bad_name("dot-segment", b"./keep.txt"),
    bad_name("empty-segment", b"a//b"),
    bad_name("leading-slash", b"/etc/passwd"),
    bad_name("backslash-raw", b"..\\..\\x"),
    bad_name("backslash-encoded", b"..%5c..%5cx"),
    bad_name("nul-encoded", b"keep.txt%00.jpg"),
    bad_name("nul-raw", b"a\x00b"),
    bad_name("newline", b"a%0ab"),
    bad_name("carriage-return", b"a%0d%0aSet-Cookie:%20x"),
    bad_name("escape", b"a%1b[31mb"),
    bad_name("delete-char", b"a%7fb"),
    bad_name("c1-control-nel", b"a%c2%85b"),
    bad_name("not-utf8", b"a%ffb"),
    bad_name("overlong-utf8-dots", b"%c0%ae%c0%ae/x"),
    bad_name("utf8-surrogate", b"a%ed%a0%80b"),
    bad_name("unicode-noncharacter", b"a%ef%b7%90b"),
    bad_name("long-name", b"/".join([LONG[:100]] * 11)),
    bad_name("long-segment", LONG * 8),
    # -- bodies over the limit --
    Case("over-limit-announced", over_limit_before_body, (413,)),
    Case("over-limit-by-one-byte", put(b"/files/big.bin", b"\x01" * (LIMIT + 1)), (413,)),
    Case("over-limit-chunked-streaming",
         lambda s: refused_while_streaming(s, b"/files/stream.bin", 16 * MiB), (413,)),
    Case("over-limit-chunked-small",
         put(b"/files/chunk.bin", chunked([b"\x02" * (LIMIT // 2)] * 3),
             b"Transfer-Encoding: chunked"), (413,)),
    Case("over-limit-multipart",
         post_form(b"/files/", form(file_part(b"big.bin", b"\x03" * (LIMIT + 10)))), (413,)),
    Case("over-limit-second-part",
         post_form(b"/files/", form(file_part(b"small.txt", b"small and whole"),
                                    file_part(b"huge.bin", b"\x04" * (LIMIT + 10)))),
         (413,), first_part_kept),
    # -- bodies cut short: the client hangs up mid-upload --
    Case("truncated-body",
         lambda s: s.hang_up(head("PUT", b"/files/cut.bin", length=500 * KiB) + b"\x05" * (100 * KiB)),
         ()),
    Case("truncated-chunked",
         lambda s: s.hang_up(head("PUT", b"/files/cut.bin", b"Transfer-Encoding: chunked")
                             + chunked([b"\x06" * (50 * KiB)] * 2, end=False) + b"ffff\r\nabc"),
         ()),
    Case("truncated-multipart",
         lambda s: s.hang_up(head("POST", b"/files/", MULTIPART, length=400 * KiB)
                             + form(file_part(b"cut.bin", b"\x07" * (300 * KiB)))[:200 * KiB]),
         ()),
    Case("unterminated-part",
         post_form(b"/files/", form(file_part(b"cut.bin", b"\x08" * 5000), end=False))),
    # -- malformed multipart --
    Case("multipart-no-boundary",
         post_form(b"/files/", form(file_part(b"a.txt", b"a")), b"Content-Type: multipart/form-data")),
    Case("multipart-wrong-boundary",
         post_form(b"/files/", form(file_part(b"a.txt", b"a"), boundary="other"))),
    Case("multipart-part-without-headers", post_form(b"/files/", form((b"", b"orphan body")))),
    Case("multipart-header-without-colon",
         post_form(b"/files/", form((b"Content-Disposition form-data name=file", b"x")))),
    Case("multipart-garbage", post_form(b"/files/", b"\x00\xff garbage \r\n--\r\n" * 50)),
    Case("multipart-too-many-parts",
         post_form(b"/files/", form(*[(b'Content-Disposition: form-data; name="x"', b"")] * 1001))),
    Case("multipart-huge-part-header",
         post_form(b"/files/", form((b"Content-Disposition: form-data; name=\"file\"; filename=\"a\""
                                     b"\r\nX-Pad: " + b"p" * (200 * KiB), b"x")))),
    Case("multipart-filename-dotdot", post_form(b"/files/", form(file_part(b"..", b"x")))),
    Case("multipart-filename-control", post_form(b"/files/", form(file_part(b"a\x01b", b"x")))),
    Case("not-multipart", post_form(b"/files/", b"file=x", b"Content-Type: text/plain"), (415,)),
    # filenames with paths: browsers (old IE) send them; only the last segment is kept
    Case("multipart-filename-traversal",
         post_form(b"/files/", form(file_part(b"../../x.txt", b"one"))), (201,),
         stored_as("x.txt", b"one")),
    Case("multipart-filename-windows",
         post_form(b"/files/", form(file_part(b"C:\\Users\\me\\y.txt", b"two"))), (201,),
         stored_as("y.txt", b"two")),
    Case("multipart-filename-absolute",
         post_form(b"/files/", form(file_part(b"/etc/passwd", b"three"))), (201,),
         stored_as("passwd", b"three")),
    # -- broken framing and headers --
    Case("content-length-garbage", put(b"/files/x", b"", b"Content-Length: 12abc")),
    Case("content-length-twice", lambda s: s.send(head("PUT", b"/files/x", b"Content-Length: 3",
                                                       b"Content-Length: 4") + b"abcd")),
    Case("chunk-size-garbage",
         lambda s: s.send(head("PUT", b"/files/x", b"Transfer-Encoding: chunked") + b"zz\r\nab\r\n0\r\n\r\n")),
    # RFC 9112: an unknown transfer coding is answered 501 (not a server fault)
    Case("transfer-encoding-unknown",
         lambda s: s.send(head("PUT", b"/files/x", b"Transfer-Encoding: gzip, chunked")
                          + chunked([b"abc"])), (501,)),
    Case("header-too-large", get(b"/files/keep.txt", b"X-Pad: " + b"h" * (300 * KiB)), (431,)),
    Case("header-not-utf8-range", get(b"/files/keep.txt", b"Range: bytes=\xff-")),
    Case("header-not-utf8-if-modified-since", get(b"/files/keep.txt", b"If-Modified-Since: \xff\xfe")),
    Case("header-not-utf8-content-type", put(b"/files/x.bin", b"abc", b"Content-Type: \xff\xfe")),
    Case("header-not-utf8-accept", get(b"/files/", b"Accept: application/json, \xff/html")),
    Case("listing-prefix-dotdot", get(b"/files/?prefix=../")),
    Case("listing-prefix-nul", get(b"/files/?prefix=%00")),
    # -- ranges: ignored (200, whole file) when malformed, 416 when unsatisfiable --
    Case("range-200-parts",
         get(b"/files/keep.txt", b"Range: bytes=" + b",".join([b"0-"] * 200)), (200,), whole_file),
    Case("range-reversed", get(b"/files/keep.txt", b"Range: bytes=50-10"), (200,), whole_file),
    Case("range-garbage-unit", get(b"/files/keep.txt", b"Range: pages=1-2"), (200,), whole_file),
    Case("range-double-dash", get(b"/files/keep.txt", b"Range: bytes=--5"), (200,), whole_file),
    Case("range-empty-suffix", get(b"/files/keep.txt", b"Range: bytes=-0"), (416,), unsatisfiable),
    Case("range-absurd-start", get(b"/files/keep.txt", b"Range: bytes=" + b"9" * 40 + b"-"),
         (416,), unsatisfiable),
    # -- mosaic tile ZIPs (the report lists skipped entries with a reason) --
    Case("zip-bomb-ratio", tiles_zip(ratio_bomb), (200,),
         reported("bomb.png", "compression ratio")),
    Case("zip-bomb-lying-sizes", tiles_zip(lying_bomb), (200,), reported("liar.png", "unreadable")),
    Case("zip-bomb-total", tiles_zip(total_bomb), (413,)),
    Case("zip-too-many-entries", tiles_zip(lambda: many_entries(20_001)), (413,)),
    Case("zip-thousands-of-tiny-entries", busy_while_ingesting, (200,),
         skipped_all(5000, "not an image")),
    Case("zip-entry-absolute", tiles_zip(lambda: make_zip([("/etc/x.png", png((1, 2, 250)))])),
         (201,), added_as_tile("/etc/x.png")),
    Case("zip-entry-climbing", tiles_zip(lambda: make_zip([("../../x.png", png((3, 250, 4)))])),
         (201,), added_as_tile("../../x.png")),
    Case("zip-entry-symlink",
         tiles_zip(lambda: make_zip([symlink_entry("link.png", b"/etc/passwd")])), (200,),
         reported("link.png", "symbolic link")),
    Case("zip-entry-encrypted",
         tiles_zip(lambda: encrypted(make_zip([("secret.png", png())]))), (200,),
         reported("secret.png", "encrypted")),
    Case("zip-entry-image-bomb",
         tiles_zip(lambda: make_zip([("huge.png", forged_png(100_000, 100_000))])), (200,),
         reported("huge.png", "decompression bomb")),
    Case("zip-entry-not-an-image",
         tiles_zip(lambda: make_zip([("photo.jpg", NOT_AN_IMAGE)])), (200,),
         reported("photo.jpg", "not an image")),
    Case("zip-entry-truncated-jpeg",
         tiles_zip(lambda: make_zip([("cut.jpg", truncated_jpeg())])), (200,),
         reported("cut.jpg", "truncated")),
    Case("zip-not-a-zip", tiles_zip(NOT_AN_IMAGE)),
    Case("zip-cut-in-half", tiles_zip(lambda: make_zip([("a.png", png()), ("b.jpg", noise_jpeg())])[:300])),
    Case("tile-image-bomb", tiles_form(file_part(b"huge.png", forged_png(100_000, 100_000), b"image")),
         (413,)),
    Case("tile-image-not-an-image", tiles_form(file_part(b"photo.jpg", NOT_AN_IMAGE, b"image")),
         (200,), reported("photo.jpg", "not an image")),
    Case("tile-form-without-upload", tiles_form(field("zip", "no file here"))),
    Case("tile-delete-traversal",
         lambda s: s.request("DELETE", "/mosaic/tiles/..%2f..%2ffiles%2fkeep.txt"), (404,)),
    # -- mosaic sources --
    Case("mosaic-source-not-an-image", mosaic(file_part(b"photo.jpg", NOT_AN_IMAGE, b"image"))),
    Case("mosaic-source-image-bomb",
         mosaic(file_part(b"huge.png", forged_png(100_000, 100_000), b"image")), (413,)),
    Case("mosaic-source-truncated-jpeg", mosaic(file_part(b"cut.jpg", truncated_jpeg(), b"image"))),
    Case("mosaic-source-stored-non-image", mosaic(field("source", "keep.txt"))),
    Case("mosaic-source-traversal", mosaic(field("source", "../keep.txt"))),
    Case("mosaic-source-absolute", mosaic(field("source", "/etc/passwd"))),
    Case("mosaic-params-absurd", mosaic(field("source", "keep.txt"), field("cols", "99999999999"))),
    Case("mosaic-params-format", mosaic(field("source", "keep.txt"), field("format", "exe"))),
    # -- slow clients --
    Case("slow-clients-20", slow_clients(20), ()),
    Case("slow-clients-150", slow_clients(150), ()),
    Case("slow-bodies-20", slow_bodies(20), ()),
]


# -- running them -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def server(request, tmp_path_factory):
    """One `fileserver serve` per backend, seeded with keep.txt and one tile."""
    backend = BACKENDS[request.param](request)
    workdir = tmp_path_factory.mktemp(f"hostile-{request.param}")
    config = backend.config(workdir)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(config)
    live = start_server(workdir, config, "--max-upload-size", "1M")
    server = Server(live, request.param, dict(parser[f"backend.{request.param}"]))
    try:
        assert server.request("PUT", "/files/keep.txt", KEEP).status == 201
        seeded = server.request("POST", "/mosaic/tiles",
                                form(file_part(b"seed.png", png((200, 100, 0)), b"image")), MULTIPART)
        assert seeded.status == 201, seeded
        raw = server.raw_storage()  # the probe below the API sees what was seeded
        assert max(raw.values()) >= 2, raw
        yield server
    finally:
        live.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(server: Server, case: Case):
    before = server.snapshot()
    log_start = len(server.log())
    replies = case.send(server)
    replies = [] if replies is None else replies if isinstance(replies, list) else [replies]

    if case.expect:
        assert replies, "no answer"
        for reply in replies:
            assert reply.status in case.expect, reply
            if reply.status >= 400:
                assert reply.headers["content-type"].startswith("application/json"), reply
                error = reply.json()
                assert isinstance(error.get("error"), str) and error["error"].strip(), reply
                assert error["status"] == reply.status
    else:
        assert not replies
    if case.check:
        case.check(server, replies)

    # the server keeps serving, logged no traceback, and nothing is half-stored
    listing = server.request("GET", "/files/")
    assert listing.status == 200, listing
    logged = server.log()[log_start:]
    assert "Traceback" not in logged, logged
    assert server.snapshot() == before
    keep = server.request("GET", "/files/keep.txt")
    assert keep.status == 200 and keep.body == KEEP


def test_cases_are_many_and_distinct():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
