"""Load: 32 concurrent clients against a real `fileserver serve`, per backend.

For at least DURATION seconds every client mixes streamed PUT and multipart
POST uploads (random sizes up to 20 MiB), full downloads, Range requests,
paginated listings and deletes on names only it touches, so it knows
exactly what the server must answer; all clients also replace a few shared
names concurrently, where a reader must always get exactly one of the
versions written (sha256 of the body equal to its ETag, and one of theirs).
Every byte is checked by sha256; at the end every file a client believes
stored must be there, intact. Any 5xx, mismatch or lost file fails the test.

Throughput (requests/s, MiB/s up and down) and latency (p50/p99 per
operation) are printed to the terminal. ``FILESERVER_LOAD_SECONDS`` can
lengthen the run, never shorten it.

Contents come from a seeded random pool (block i of a file with seed s is a
slice of the pool chosen by hashing (s, i)), so any byte range of any
version can be regenerated: the client streams uploads from a generator and
hashes downloads as they arrive, keeping its memory small.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterator

import pytest

DURATION = 60  # seconds of load per backend; the issue asks for at least 60
CLIENTS = 32
MiB = 1024 * 1024
MAX_SIZE = 20 * MiB
#: (share of uploads, smallest, largest size): mostly small, some up to 20 MiB,
#: so a 2-core machine still does a meaningful number of requests per client.
SIZES = [(0.60, 0, 64 * 1024), (0.25, 64 * 1024, MiB), (0.12, MiB, 5 * MiB),
         (0.03, 5 * MiB, MAX_SIZE)]
#: operation -> weight in each client's mix
MIX = {"put": 26, "put_chunked": 4, "post": 7, "get": 22, "range": 14, "list": 9,
       "delete": 8, "shared_put": 5, "shared_get": 5}
SHARED = [f"shared/s{k}.bin" for k in range(4)]
SEED = 20240613
BLOCK = 64 * 1024
POOL = random.Random(SEED).randbytes(4 * MiB)
POOL_VIEW = memoryview(POOL)


def load_seconds() -> float:
    """FILESERVER_LOAD_SECONDS may lengthen the run, never shorten it below the goal."""
    return max(float(os.environ.get("FILESERVER_LOAD_SECONDS") or DURATION), DURATION)


# -- reproducible contents -------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """One version of a file: ``size`` bytes determined by ``seed``."""

    seed: int
    size: int

    def _block(self, i: int) -> memoryview:
        key = hashlib.blake2b(b"%d:%d" % (self.seed, i), digest_size=8).digest()
        offset = int.from_bytes(key, "big") % (len(POOL) - BLOCK)
        return POOL_VIEW[offset:offset + BLOCK]

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[memoryview]:
        """Bytes [start, stop) in pieces of at most BLOCK."""
        stop = self.size if stop is None else stop
        pos = start
        while pos < stop:
            i, skip = divmod(pos, BLOCK)
            piece = self._block(i)[skip:min(BLOCK, stop - i * BLOCK)]
            yield piece
            pos += len(piece)

    def sha256(self, start: int = 0, stop: int | None = None) -> str:
        digest = hashlib.sha256()
        for piece in self.chunks(start, stop):
            digest.update(piece)
        return digest.hexdigest()


def random_size(rng: random.Random, largest: int = MAX_SIZE) -> int:
    bands = [(share, low, min(high, largest)) for share, low, high in SIZES if low < largest]
    _, low, high = rng.choices(bands, [band[0] for band in bands])[0]
    return rng.randint(low, high)


# -- what all clients share --------------------------------------------------------------


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failure_count: int = 0
    sent: int = 0
    received: int = 0
    #: shared name -> sha256 of every version anyone started to write
    versions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: shared names some PUT has completed on (never deleted: a 404 is then wrong)
    stored: set[str] = field(default_factory=set)

    def record(self, op: str, status: int, seconds: float, sent: int = 0, received: int = 0):
        with self.lock:
            self.latencies[op].append(seconds)
            self.statuses[status] += 1
            self.sent += sent
            self.received += received

    def fail(self, message: str) -> None:
        with self.lock:
            self.failure_count += 1
            if len(self.failures) < 30:
                self.failures.append(message)


class Mismatch(AssertionError):
    """The server answered something other than what this client knows is right."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def quoted(name: str) -> str:
    return "/files/" + urllib.parse.quote(name, safe="/")


# -- one client -------------------------------------------------------------------------


class Client:
    """Owns the names under ``cNN/``; its ``files`` is what must be stored there."""

    def __init__(self, index: int, url: str, stats: Stats, seconds: float):
        self.index, self.stats = index, stats
        self.prefix = f"c{index:02d}/"
        self.rng = random.Random(SEED * 1000 + index)
        self.files: dict[str, Content] = {}
        self.seconds = seconds
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0

    # -- HTTP with streaming bodies, every response counted

    def _request(self, op: str, method: str, path: str, body=None, headers=None,
                 sink=None, sent: int = 0, chunked: bool = False) -> tuple[int, dict, bytes]:
        """One request; a ``sink(piece)`` gets a streamed body, else it is returned."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        began = time.monotonic()
        headers = {"Accept": "application/json", **(headers or {})}
        try:
            self.conn.request(method, path, body, headers, encode_chunked=chunked)
            response = self.conn.getresponse()
            received, kept = 0, []
            while piece := response.read(256 * 1024):
                received += len(piece)
                if sink is not None and response.status < 300:
                    sink(piece)
                else:
                    kept.append(piece)
            answer = (response.status, {k.lower(): v for k, v in response.getheaders()},
                      b"".join(kept))
            if response.will_close:
                self._drop()
        except BaseException:
            self._drop()
            raise
        self.requests += 1
        self.stats.record(op, answer[0], time.monotonic() - began, sent, received)
        if answer[0] >= 500:
            raise Mismatch(f"{method} {path}: {answer[0]} {answer[2][:300]!r}")
        return answer

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _upload(self, op: str, name: str, content: Content, chunked: bool = False) -> dict:
        digest = hashlib.sha256()

        def body():
            for piece in content.chunks():
                digest.update(piece)
                yield piece

        headers = {"Content-Type": "application/octet-stream"}
        if not chunked:
            headers["Content-Length"] = str(content.size)
        status, _, reply = self._request(op, "PUT", quoted(name), body(), headers,
                                         sent=content.size, chunked=chunked)
        expect(digest.hexdigest() == content.sha256(), "the client sent other bytes")
        return {"status": status, "info": json.loads(reply) if status < 300 else reply}

    def _download(self, op: str, name: str, headers=None) -> tuple[int, dict, str, int]:
        digest, size = hashlib.sha256(), 0

        def sink(piece):
            nonlocal size
            digest.update(piece)
            size += len(piece)

        status, got, _ = self._request(op, "GET", quoted(name), headers=headers, sink=sink)
        return status, got, digest.hexdigest(), size

    # -- operations

    def new_content(self, largest: int = MAX_SIZE) -> Content:
        return Content(self.rng.getrandbits(62), random_size(self.rng, largest))

    def put(self, chunked: bool = False) -> None:
        pool = [f"f{k}.bin" for k in range(8)] + [f"sub/ü{k}.dat" for k in range(3)]
        name = self.prefix + self.rng.choice(pool)
        content = self.new_content()
        answer = self._upload("put_chunked" if chunked else "put", name, content, chunked)
        expected = 200 if name in self.files else 201
        expect(answer["status"] == expected,
               f"PUT {name}: {answer['status']}, expected {expected}: {answer['info']!r:.300}")
        info = answer["info"]
        expect((info["name"], info["size"], info["sha256"]) ==
               (name, content.size, content.sha256()), f"PUT {name} answered {info}")
        self.files[name] = content

    def post(self) -> None:
        """Multipart: one or two files into the client's folder."""
        boundary = f"----load{self.rng.getrandbits(64):x}"
        parts = [(f"m{self.rng.randrange(4)}.bin", self.new_content(4 * MiB))
                 for _ in range(self.rng.choice((1, 1, 2)))]
        if len(parts) == 2 and parts[0][0] == parts[1][0]:
            parts.pop()  # one name twice in one request: no exact expectation
        heads = [(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream"
                  f"\r\n\r\n").encode() for filename, _ in parts]
        tail = f"--{boundary}--\r\n".encode()
        length = sum(len(h) + c.size + 2 for h, (_, c) in zip(heads, parts)) + len(tail)

        def body():
            for head, (_, content) in zip(heads, parts):
                yield head
                yield from content.chunks()
                yield b"\r\n"
            yield tail

        status, _, reply = self._request(
            "post", "POST", quoted(self.prefix), body(), sent=length,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                     "Content-Length": str(length)})
        expect(status == 201, f"POST {self.prefix}: {status} {reply[:300]!r}")
        infos = json.loads(reply)
        wanted = [(self.prefix + n, c.size, c.sha256()) for n, c in parts]
        expect([(i["name"], i["size"], i["sha256"]) for i in infos] == wanted,
               f"POST {self.prefix} answered {infos}, expected {wanted}")
        for filename, content in parts:
            self.files[self.prefix + filename] = content

    def _some_file(self) -> tuple[str, Content] | None:
        if not self.files:
            return None
        name = self.rng.choice(sorted(self.files))
        return name, self.files[name]

    def get(self) -> None:
        name, content = self._some_file()
        status, headers, digest, size = self._download("get", name)
        expect(status == 200, f"GET {name}: {status}")
        expect(headers.get("etag") == f'"{content.sha256()}"', f"GET {name}: ETag {headers}")
        expect((size, digest) == (content.size, content.sha256()),
               f"GET {name}: {size} bytes with sha256 {digest}, expected {content.size}")

    def range(self) -> None:
        name, content = self._some_file()
        if content.size == 0:
            return self.get()
        start = self.rng.randrange(content.size)
        if self.rng.random() < 0.2:  # a suffix range
            length = self.rng.randint(1, content.size)
            header, start, stop = f"bytes=-{length}", content.size - length, content.size
        else:
            stop = min(content.size, start + self.rng.randint(1, 2 * MiB))
            header = f"bytes={start}-{stop - 1}"
        status, headers, digest, size = self._download("range", name, {"Range": header})
        expect(status == 206, f"GET {name} {header}: {status}")
        expect(headers.get("content-range") == f"bytes {start}-{stop - 1}/{content.size}",
               f"GET {name} {header}: Content-Range {headers.get('content-range')}")
        expect((size, digest) == (stop - start, content.sha256(start, stop)),
               f"GET {name} {header}: wrong bytes ({size} of {stop - start})")

    def listed(self, prefix: str, limit: int) -> dict[str, tuple[int, str]]:
        """Every page of the JSON listing of ``prefix``: name -> (size, sha256)."""
        found: dict[str, tuple[int, str]] = {}
        path = f"/files/?{urllib.parse.urlencode({'prefix': prefix, 'limit': limit})}" \
               "&format=json"
        while path:
            status, _, reply = self._request("list", "GET", path)
            expect(status == 200, f"GET {path}: {status} {reply[:300]!r}")
            page = json.loads(reply)
            for info in page["files"]:
                expect(info["name"] not in found, f"{info['name']} listed twice")
                found[info["name"]] = (info["size"], info["sha256"])
            path = page["next"]
        return found

    def list(self) -> None:
        found = self.listed(self.prefix, self.rng.choice((5, 100)))
        expected = {n: (c.size, c.sha256()) for n, c in self.files.items()}
        expect(found == expected, f"listing of {self.prefix}: missing "
               f"{sorted(set(expected) - set(found))}, extra {sorted(set(found) - set(expected))}"
               f", differing {[n for n in found if n in expected and found[n] != expected[n]]}")

    def delete(self) -> None:
        name, _ = self._some_file()
        status, _, reply = self._request("delete", "DELETE", quoted(name))
        expect(status == 204, f"DELETE {name}: {status} {reply[:300]!r}")
        del self.files[name]
        status, _, _ = self._request("get_deleted", "GET", quoted(name))
        expect(status == 404, f"GET {name} after its DELETE: {status}")

    def shared_put(self) -> None:
        name = self.rng.choice(SHARED)
        content = self.new_content(2 * MiB)
        with self.stats.lock:  # known before any reader can see it
            self.stats.versions[name].add(content.sha256())
        answer = self._upload("shared_put", name, content)
        expect(answer["status"] in (200, 201), f"PUT {name}: {answer['status']}")
        expect(answer["info"]["sha256"] == content.sha256(), f"PUT {name}: {answer['info']}")
        with self.stats.lock:
            self.stats.stored.add(name)

    def shared_get(self) -> None:
        name = self.rng.choice(SHARED)
        with self.stats.lock:
            stored = name in self.stats.stored
        status, headers, digest, _ = self._download("shared_get", name)
        with self.stats.lock:
            written = set(self.stats.versions[name])
        if status == 404 and not stored:
            return  # no PUT of it had completed yet
        check_shared(name, status, headers, digest, written)

    def run(self) -> None:
        ops, weights = list(MIX), list(MIX.values())
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            op = self.rng.choices(ops, weights)[0]
            if not self.files and op in ("get", "range", "delete"):
                op = "put"
            try:
                {"put": self.put, "put_chunked": lambda: self.put(chunked=True),
                 "post": self.post, "get": self.get, "range": self.range, "list": self.list,
                 "delete": self.delete, "shared_put": self.shared_put,
                 "shared_get": self.shared_get}[op]()
            except Mismatch as exc:
                self.stats.fail(f"client {self.index}: {exc}")
            except Exception as exc:  # a dropped connection, a timeout: a failure too
                self._drop()
                self.stats.fail(f"client {self.index} {op}: {type(exc).__name__}: {exc}")
        self._drop()


def check_shared(name: str, status: int, headers: dict, digest: str, written: set[str]):
    expect(status == 200, f"GET {name}: {status}")
    expect(headers.get("etag") == f'"{digest}"', f"GET {name}: the body does not match its ETag")
    expect(digest in written, f"GET {name}: content {digest} is none of the versions written")


# -- the test -----------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(backend: str, seconds: float, stats: Stats, requests: int) -> str:
    every = [v for values in stats.latencies.values() for v in values]
    lines = [f"load[{backend}]: {CLIENTS} clients for {seconds:.1f} s: {requests} requests "
             f"({requests / seconds:.1f}/s), up {stats.sent / MiB:.0f} MiB "
             f"({stats.sent / MiB / seconds:.1f} MiB/s), down {stats.received / MiB:.0f} MiB "
             f"({stats.received / MiB / seconds:.1f} MiB/s); latency of all requests p50 "
             f"{percentile(every, 0.5) * 1000:.0f} ms, p99 {percentile(every, 0.99) * 1000:.0f} ms"
             f"; statuses "
             f"{dict(sorted(stats.statuses.items()))}; failures {stats.failure_count}",
             f"  {'operation':<12} {'count':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for op in sorted(stats.latencies):
        values = stats.latencies[op]
        lines.append(f"  {op:<12} {len(values):>6} {percentile(values, 0.5) * 1000:>8.1f} "
                     f"{percentile(values, 0.99) * 1000:>8.1f} {max(values) * 1000:>8.1f}")
    summary = {"backend": backend, "clients": CLIENTS, "seconds": round(seconds, 1),
               "requests": requests, "requests_per_s": round(requests / seconds, 1),
               "up_mib_per_s": round(stats.sent / MiB / seconds, 2),
               "down_mib_per_s": round(stats.received / MiB / seconds, 2),
               "p99_ms_all": round(percentile(every, 0.99) * 1000, 1),
               "p50_ms": {op: round(percentile(v, 0.5) * 1000, 1)
                          for op, v in sorted(stats.latencies.items())},
               "p99_ms": {op: round(percentile(v, 0.99) * 1000, 1)
                          for op, v in sorted(stats.latencies.items())}}
    lines.append("  json: " + json.dumps(summary))
    return "\n".join(lines)


@pytest.mark.timeout(load_seconds() + 600)
def test_concurrent_clients_lose_and_corrupt_nothing(live_server, backend, capsys):
    seconds = load_seconds()
    stats = Stats()
    clients = [Client(i, live_server.url, stats, seconds) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, name=f"load-client-{c.index}") for c in clients]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    requests = sum(c.requests for c in clients)
    with capsys.disabled():
        print("\n" + report(backend.name, elapsed, stats, requests))

    assert live_server.process.poll() is None, live_server.output()[-3000:]
    assert stats.failure_count == 0, (f"{stats.failure_count} failures, the first ones:\n"
                                      + "\n".join(stats.failures))
    assert not [s for s in stats.statuses if s >= 500]
    idle = [c.index for c in clients if c.requests < 3]
    assert not idle, f"clients {idle} made fewer than 3 requests: the load did not run"

    # Nothing lost: each client's files are all there, listed and intact.
    checker = Client(CLIENTS, live_server.url, stats, 0)
    everything = checker.listed("", 1000)
    for client in clients:
        for name, content in client.files.items():
            status, headers, digest, size = checker._download("final_get", name)
            expect((status, size, digest) == (200, content.size, content.sha256()),
                   f"{name} lost or corrupted: {status}, {size} bytes, sha256 {digest}")
            expect(everything.pop(name) == (content.size, content.sha256()), f"{name} listing")
    for name in SHARED:
        if stats.versions[name]:
            status, headers, digest, _ = checker._download("final_get", name)
            check_shared(name, status, headers, digest, stats.versions[name])
            everything.pop(name)
    assert everything == {}, f"listed but written by nobody: {sorted(everything)[:20]}"
    assert not [s for s in stats.statuses if s >= 500]
