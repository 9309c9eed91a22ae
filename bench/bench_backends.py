#!/usr/bin/env python3
"""Storage-backend benchmark: our server over each backend next to that backend's own driver.

Run by hand (it is not a test):  .venv/bin/python bench/bench_backends.py  [--help]

For each backend (gridfs, couchdb, and embedded for reference) it starts the
database server the tests use (tests/servers: SecantusDB for MongoDB, the
express-pouchdb CouchDB-API server), or uses the real ones in MONGODB_URI /
COUCHDB_URL, runs `fileserver init-db` and `fileserver serve` on it, and
measures in the same run, on loopback:

1. upload (curl -T) and download (curl -o /dev/null) of a big random file
   through our server, median of N rounds; every upload's sha256 and size as
   our server reports them are checked, its first copy is downloaded and
   sha256-verified once, the timed downloads check status and size;
2. the same transfers done directly with the driver, alternating with 1:
   GridFS: pymongo GridFSBucket.upload_from_stream / open_download_stream
   read in 1 MiB pieces; CouchDB: plain http.client, a PUT of the attachment
   with the body streamed in 1 MiB pieces and a GET read in 1 MiB pieces;
   embedded: a plain file copy in 1 MiB pieces, fsync'd as the store does.
   Every direct upload's stored size is checked, the first is sha256-verified;
3. our server's memory growth while it moves about 1 GiB each way (a fresh
   process: VmHWM after, minus VmRSS before, from /proc/PID/status), and the
   database test server's own RSS (at start, peak, at the end).

The Markdown table is printed and written to bench/results/backends.md.
Needs: curl, Linux /proc; node + npm (CouchDB test server) and SecantusDB
(next to this Python) unless COUCHDB_URL / MONGODB_URI are set.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench_http import (CHUNK, HOST, MiB, Server, _exit_cleanly, _printed_url, _spawn, cpu_times,
                        curl, download, log, publish, random_file, sha256_of, steal_percent,
                        tool_version, upload, version)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results" / "backends.md"
sys.path.insert(0, str(REPO / "tests"))
import servers as test_servers  # noqa: E402 -- the test harness (tests/servers)

BACKENDS = ("embedded", "gridfs", "couchdb")
REFERENCE = {"embedded"}  # no goal for these: the direct path is a local file
SPEED_GOAL = 0.9  # ours/direct
MEMORY_GOAL = 64 * MiB
OP_TIMEOUT = 300  # seconds of silence on a driver's socket before it gives up
SMALLEST_FALLBACK_MIB = 16
# A member user of its own per run (removed at the end): a leftover of a killed
# run on a real server can't clash with this one's password.
COUCH_MEMBER = (f"fileserver-bench-{uuid.uuid4().hex[:8]}", "bench-" + uuid.uuid4().hex[:12])


def drain(read: Callable[[int], bytes], size: int, sha256: str | None, what: str) -> None:
    """Read to the end in CHUNK pieces; check the size (and the sha256 if given)."""
    digest = hashlib.sha256() if sha256 else None
    got = 0
    while chunk := read(CHUNK):
        got += len(chunk)
        if digest:
            digest.update(chunk)
    if got != size or (digest and digest.hexdigest() != sha256):
        raise RuntimeError(f"{what}: read {got} bytes, expected {size}"
                           + (" (sha256 checked)" if sha256 else ""))


def restamp(path: Path) -> str:
    """Give the file new bytes at its start; return its sha256.

    Every timed upload sends bytes no store has seen: the CouchDB test server
    (PouchDB) keeps attachments by digest and skips most of the work for
    bytes it already holds (about 1.9 s instead of 3-4 s for 200 MiB).
    """
    with open(path, "r+b") as f:
        f.write(os.urandom(64))
    return sha256_of(path)


def status_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


# -- direct access, one class per backend ------------------------------------------
# upload(source, name) -> seconds; download(name, size, sha256=None) -> seconds;
# stored_size(name); delete(name); close().


class FileCopy:
    """embedded: a plain file copy, the floor for a store on the local disk."""

    how = ("a plain file copy in 1 MiB pieces with an fsync at the end (the embedded store "
           "fsyncs by default), read back in 1 MiB pieces (from the page cache)")

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)

    def upload(self, source: Path, name: str) -> float:
        began = time.perf_counter()
        with open(source, "rb") as src, open(self.root / name, "wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        return time.perf_counter() - began

    def download(self, name: str, size: int, sha256: str | None = None) -> float:
        began = time.perf_counter()
        with open(self.root / name, "rb") as f:
            drain(f.read, size, sha256, f"file {name}")
        return time.perf_counter() - began

    def stored_size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def delete(self, name: str) -> None:
        (self.root / name).unlink()

    def close(self) -> None:
        pass


class GridFSDirect:
    """gridfs: pymongo's GridFSBucket, in a bucket of its own next to our store's."""

    how = ("pymongo `GridFSBucket.upload_from_stream` from the open file (default 255 KiB "
           "chunks) / `open_download_stream` read in 1 MiB pieces, bucket `direct` in the "
           "same database")

    def __init__(self, uri: str, database: str):
        import gridfs
        import pymongo

        self.client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000,
                                          connectTimeoutMS=10_000,
                                          socketTimeoutMS=OP_TIMEOUT * 1000)
        self.db = self.client[database]
        self.bucket = gridfs.GridFSBucket(self.db, bucket_name="direct")
        self.ids: dict[str, object] = {}

    def upload(self, source: Path, name: str) -> float:
        with open(source, "rb") as f:
            began = time.perf_counter()
            self.ids[name] = self.bucket.upload_from_stream(name, f)
            return time.perf_counter() - began

    def download(self, name: str, size: int, sha256: str | None = None) -> float:
        began = time.perf_counter()
        with self.bucket.open_download_stream(self.ids[name]) as stream:
            drain(stream.read, size, sha256, f"GridFS {name}")
        return time.perf_counter() - began

    def stored_size(self, name: str) -> int:
        return int(self.db["direct.files"].find_one({"_id": self.ids[name]})["length"])

    def delete(self, name: str) -> None:
        self.bucket.delete(self.ids.pop(name))

    def close(self) -> None:
        self.client.close()


class CouchDirect:
    """couchdb: plain streaming HTTP to the attachment, as the same member user."""

    how = ("http.client `PUT /DB/DOC/content` (a new document) with the body streamed in "
           "1 MiB pieces and Content-Length / `GET` of it read in 1 MiB pieces, same user "
           "and database as our server")

    def __init__(self, url: str, database: str):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = f"{parts.path.rstrip('/')}/{urllib.parse.quote(database, safe='')}/"
        self.headers = {}
        if parts.username:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def _request(self, method: str, path: str, body=None, headers=None,
                 expect=(200,)) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=OP_TIMEOUT)
        try:
            conn.request(method, self.path + path, body, {**self.headers, **(headers or {})})
            response = conn.getresponse()
            if response.status not in expect:
                raise RuntimeError(f"CouchDB {method} {path} -> {response.status} "
                                   f"{response.read()[:300]!r}")
            return conn, response
        except BaseException:
            conn.close()
            raise

    def _json(self, method: str, path: str, expect=(200,)) -> dict:
        conn, response = self._request(method, path, expect=expect)
        try:
            return json.loads(response.read())
        finally:
            conn.close()

    def upload(self, source: Path, name: str) -> float:
        def body(f):
            while chunk := f.read(CHUNK):
                yield chunk

        headers = {"Content-Type": "application/octet-stream",
                   "Content-Length": str(source.stat().st_size)}
        with open(source, "rb") as f:
            began = time.perf_counter()
            conn, response = self._request("PUT", f"{name}/content", body(f), headers,
                                           expect=(201, 202))
            try:
                response.read()
            finally:
                conn.close()
            return time.perf_counter() - began

    def download(self, name: str, size: int, sha256: str | None = None) -> float:
        began = time.perf_counter()
        conn, response = self._request("GET", f"{name}/content")
        try:
            drain(response.read, size, sha256, f"CouchDB {name}")
        finally:
            conn.close()
        return time.perf_counter() - began

    def stored_size(self, name: str) -> int:
        return int(self._json("GET", name)["_attachments"]["content"]["length"])

    def delete(self, name: str) -> None:
        rev = self._json("GET", name)["_rev"]
        self._json("DELETE", f"{name}?rev={urllib.parse.quote(rev)}")

    def close(self) -> None:
        pass


# -- one backend: its database server, store options, direct access ------------------


@dataclass
class Setup:
    name: str
    options: dict[str, str]  # [backend.NAME]
    direct: object
    work: Path
    admin_url: str | None = None
    db: test_servers.Running | None = None  # the database server (None: embedded)
    db_what: str = ""  # shown in the report
    db_start: dict[str, int] | None = None
    db_end: dict[str, int] | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    ini: Path | None = None

    def db_alive(self) -> bool:
        return self.db is None or self.db.external or self.db.process.poll() is None

    def db_status(self) -> dict[str, int] | None:
        if self.db is None or self.db.external or self.db.process.poll() is not None:
            return None
        return status_of(self.db.process.pid)

    def close(self) -> None:
        """Stop what this backend started (idempotent): cleanups, direct client, server."""
        if self.db_end is None:
            try:
                self.db_end = self.db_status()
            except OSError:
                pass
        while self.cleanup:
            try:
                self.cleanup.pop()()
            except Exception as exc:  # noqa: BLE001 -- best effort, keep stopping the rest
                log(f"{self.name}: cleanup failed: {type(exc).__name__}: {exc}")
        if self.db is not None:
            self.db.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def setup_embedded(work: Path) -> Setup:
    root = work / "embedded"
    return Setup("embedded", {"path": str(root / "store")}, FileCopy(root / "direct"), root,
                 db_what="none (local files)")


def setup_gridfs(work: Path) -> Setup:
    root = work / "gridfs"
    mongo = test_servers.start_mongodb(root / "mongodb")
    database = _unique("bench")
    setup = Setup("gridfs", {"uri": mongo.uri, "database": database, "bucket": "fs"},
                  None, root, db=mongo)
    try:
        if mongo.external:
            setup.db_what = f"external MONGODB_URI ({mongo.uri.split('@')[-1]})"
        else:
            setup.db_what = (f"SecantusDB {version('SecantusDB')} (`secantusd-py`, a separate "
                             "process)")
        setup.direct = GridFSDirect(mongo.uri, database)
        setup.cleanup.append(setup.direct.close)
        setup.cleanup.append(lambda: setup.direct.client.drop_database(database))
        setup.db_start = setup.db_status()
        return setup
    except BaseException:
        setup.close()
        raise


def _couch_admin(admin_url: str, method: str, path: str, body: dict | None = None,
                 expect=(200, 201, 202)) -> dict | None:
    """A JSON request as the server admin; None for a 404."""
    parts = urllib.parse.urlsplit(admin_url)
    plain = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    token = base64.b64encode(f"{urllib.parse.unquote(parts.username or '')}:"
                             f"{urllib.parse.unquote(parts.password or '')}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(plain.rstrip("/") + "/" + path, data=data, method=method,
                                     headers={"Authorization": f"Basic {token}",
                                              "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise RuntimeError(f"CouchDB {method} {path} -> {exc.code} {exc.read()[:300]!r}") from None


def setup_couchdb(work: Path) -> Setup:
    root = work / "couchdb"
    couch = test_servers.start_couchdb(root / "couchdb")
    database = _unique("bench-")
    setup = Setup("couchdb", {}, None, root, admin_url=couch.admin_url, db=couch)
    try:
        if couch.external:
            setup.db_what = f"external COUCHDB_URL ({couch.url})"
        else:
            package = test_servers.COUCHDB_TOOLS / "node_modules" / "express-pouchdb" / "package.json"
            pouch = json.loads(package.read_text()).get("version", "?") if package.exists() else "?"
            setup.db_what = (f"express-pouchdb {pouch} on LevelDB, node "
                             f"{tool_version(['node', '--version'])}")
        # A member of the database, no admin, as conftest's _ensure_couch_user
        # and as an operator would run it; init-db adds it to _security.
        user, password = COUCH_MEMBER
        doc = f"_users/org.couchdb.user:{user}"
        if _couch_admin(couch.admin_url, "GET", doc) is None:
            _couch_admin(couch.admin_url, "PUT", doc, {"name": user, "password": password,
                                                       "roles": [], "type": "user"})

            def drop_user():
                current = _couch_admin(couch.admin_url, "GET", doc)
                if current:
                    _couch_admin(couch.admin_url, "DELETE", f"{doc}?rev={current['_rev']}")
            setup.cleanup.append(drop_user)
        member_url = couch.user_url(user, password)
        setup.options = {"url": member_url, "database": database}
        setup.direct = CouchDirect(member_url, database)
        setup.cleanup.append(lambda: _couch_admin(couch.admin_url, "DELETE", database))
        setup.db_start = setup.db_status()
        return setup
    except BaseException:
        setup.close()
        raise


SETUPS = {"embedded": setup_embedded, "gridfs": setup_gridfs, "couchdb": setup_couchdb}


# -- our server on a backend ------------------------------------------------------------


def init_store(setup: Setup) -> None:
    """Write the INI file and run `fileserver init-db` on it."""
    setup.work.mkdir(parents=True, exist_ok=True)
    setup.ini = setup.work / "fileserver.ini"
    lines = ["[fileserver]", f"backend = {setup.name}", f"data_dir = {setup.work / 'data'}",
             "", f"[backend.{setup.name}]", *(f"{k} = {v}" for k, v in setup.options.items())]
    setup.ini.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "fileserver", "init-db", "--config", str(setup.ini)]
    if setup.admin_url:
        cmd += ["--admin-url", setup.admin_url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"fileserver init-db failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")


SERVE_FLAGS = ["--host", HOST, "--port", "0", "--max-upload-size", "0"]


def start_ours(setup: Setup, tag: str) -> Server:
    log_path = setup.work / f"ours-{tag}.log"
    cmd = [sys.executable, "-m", "fileserver", "serve", "--config", str(setup.ini), *SERVE_FLAGS]
    proc, url = _spawn(cmd, log_path, _printed_url(log_path))
    return Server(f"ours ({setup.name})", proc, url + "files/", setup.work, SERVE_FLAGS,
                  plain_files=False)


def delete_ours(server: Server, name: str) -> None:
    t = curl(["-X", "DELETE", "-o", os.devnull, server.url(name)], 120)
    if t.status != 204:
        raise RuntimeError(f"{server.label}: DELETE {name} -> {t.status}")



# -- the measurements -------------------------------------------------------------------


def transfer_tests(setup: Setup, big: Path, big_sha: str, opts, work: Path) -> dict:
    """Ours and direct, alternating, on one fresh server of ours; medians later."""
    size = big.stat().st_size
    mib = size // MiB
    timeout = max(120, 2 * mib)  # generous: about 0.5 MiB/s at worst
    times: dict[str, list[float]] = {"ours_up": [], "direct_up": [], "ours_down": [],
                                     "direct_down": []}
    direct = setup.direct
    server = start_ours(setup, f"transfer-{mib}")
    try:
        before = server.rss()["VmRSS"]
        # The copies to read back, each sha256-verified once (also warms things up).
        # Names unique to this size: a retry at a smaller size must not replace (200).
        ours_big, direct_big = f"big-{mib}.bin", f"direct-big-{mib}"
        upload(server, big, ours_big, big_sha, timeout, work)
        download(server, ours_big, big_sha, size, timeout, work)
        direct.upload(big, direct_big)
        stored = direct.stored_size(direct_big)
        if stored != size:
            raise RuntimeError(f"direct upload stored {stored} of {size} bytes")
        direct.download(direct_big, size, big_sha)

        def ours_down(i):
            return download(server, ours_big, None, size, timeout, work)

        def direct_down(i):
            return direct.download(direct_big, size)

        fresh = work / f"upload-{mib}.bin"  # big, with new bytes at the start for each upload
        shutil.copyfile(big, fresh)

        def ours_up(i):
            seconds = upload(server, fresh, f"up-{mib}-{i}.bin", restamp(fresh), timeout, work)
            delete_ours(server, f"up-{mib}-{i}.bin")  # keeps the store (and the db server) small
            return seconds

        def direct_up(i):
            restamp(fresh)
            seconds = direct.upload(fresh, f"direct-up-{mib}-{i}")
            stored = direct.stored_size(f"direct-up-{mib}-{i}")
            if stored != size:
                raise RuntimeError(f"direct upload {i} stored {stored} of {size} bytes")
            direct.delete(f"direct-up-{mib}-{i}")
            return seconds

        for kind, pair in (("down", (ours_down, direct_down)), ("up", (ours_up, direct_up))):
            for i in range(opts.rounds):
                order = (("ours", pair[0]), ("direct", pair[1]))
                for who, run in (order if i % 2 == 0 else order[::-1]):
                    seconds = run(i)
                    times[f"{who}_{kind}"].append(seconds)
                    log(f"{setup.name} {kind}load {i + 1}/{opts.rounds} {who}: {seconds:.2f} s "
                        f"({mib / seconds:.0f} MiB/s)")
        after = server.rss()
        delete_ours(server, ours_big)
        direct.delete(direct_big)
        fresh.unlink()
        return {"mib": mib, **times, "ours_before": before, "ours_peak": after["VmHWM"]}
    except Exception as exc:
        raise RuntimeError(f"{exc}\n--- our server's log ---\n"
                           f"{_tail(server.data_dir / f'ours-transfer-{mib}.log')}") from exc
    finally:
        server.stop()


def memory_test(setup: Setup, path: Path, pieces: int, work: Path) -> dict:
    """A fresh server of ours: VmHWM after moving ``path`` up and down ``pieces`` times
    (new bytes at its start each time, see restamp), minus VmRSS before."""
    size = path.stat().st_size
    total = pieces * size
    timeout = max(300, 2 * size // MiB)
    server = start_ours(setup, "memory")
    try:
        small = work / "warm.bin"
        small_sha = random_file(small, 4096)
        upload(server, small, "warm.bin", small_sha, 60, work)  # warm up the code paths
        download(server, "warm.bin", small_sha, 4096, 60, work)
        before = server.rss()["VmRSS"]
        up = down = 0.0
        after_upload = None  # the peak after the first upload alone: which direction grows
        for k in range(pieces):
            sha = restamp(path)
            up += upload(server, path, f"mem-{k}.bin", sha, timeout, work)
            if after_upload is None:
                after_upload = server.rss()["VmHWM"]
            down += download(server, f"mem-{k}.bin", sha, size, timeout, work)
            if pieces > 1:
                delete_ours(server, f"mem-{k}.bin")
        after = server.rss()
        if pieces == 1:
            delete_ours(server, "mem-0.bin")
        log(f"{setup.name}: moved {total // MiB} MiB each way (up {up:.1f} s, down {down:.1f} s); "
            f"our RSS {before / MiB:.1f} -> peak {after['VmHWM'] / MiB:.1f} MiB")
        return {"before": before, "peak": after["VmHWM"], "after_upload": after_upload,
                "files": pieces,
                "file_mib": size // MiB, "up": up, "down": down}
    except Exception as exc:
        raise RuntimeError(f"{exc}\n--- our server's log ---\n"
                           f"{_tail(setup.work / 'ours-memory.log')}") from exc
    finally:
        server.stop()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def run_backend(setup: Setup, big: Path, big_sha: str, huge: Callable[[], Path],
                opts, work: Path) -> dict:
    result: dict = {"notes": []}
    init_store(setup)
    # 1 + 2: at the full size; if the backend can't, at halves of it (honestly labelled).
    source, sha = big, big_sha
    while True:
        try:
            result["transfer"] = transfer_tests(setup, source, sha, opts, work)
            break
        except Exception as exc:  # noqa: BLE001 -- reported; maybe retried smaller
            mib = source.stat().st_size // MiB
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            result["notes"].append(f"{mib} MiB transfers failed: {first_line}")
            log(f"{setup.name}: {mib} MiB transfers failed: {exc}")
            smaller = mib // 2
            if not opts.fallback or smaller < SMALLEST_FALLBACK_MIB or not setup.db_alive():
                if not setup.db_alive():
                    result["notes"].append("the database server died: "
                                           + setup.db.log_tail(5).replace("\n", " | "))
                result["transfer_error"] = first_line
                break
            source = work / f"big-{smaller}.bin"
            if not source.exists():
                log(f"writing {smaller} MiB of random bytes")
                sha = random_file(source, smaller * MiB)
            else:
                sha = sha256_of(source)
    if not setup.db_alive():
        result["memory_error"] = "not run: the database server is gone"
        return result
    # 3: about 1 GiB each way: one file, or for --mem-split backends, files of the
    # transfer size (the size that worked above).
    try:
        if setup.name in opts.mem_split:
            piece = work / "piece.bin"
            shutil.copyfile(source, piece)
            pieces = max(1, round(opts.mem_mib * MiB / source.stat().st_size))
            try:
                result["memory"] = memory_test(setup, piece, pieces, work)
            finally:
                piece.unlink()
        else:
            result["memory"] = memory_test(setup, huge(), 1, work)
    except Exception as exc:  # noqa: BLE001 -- reported
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log(f"{setup.name}: memory test failed: {exc}")
        result["memory_error"] = first_line
    return result


# -- report ----------------------------------------------------------------------------


def report(results: dict, setups: dict[str, Setup], opts) -> str:
    names = list(results)
    med = statistics.median

    def speed(r: dict, key: str) -> float:
        return r["mib"] / med(r[key])

    def transfer_cell(name: str, key: str) -> str:
        r = results[name]
        if "transfer" not in r:
            return "failed" if "transfer_error" in r else "not run (see the notes)"
        t = r["transfer"]
        size = "" if t["mib"] == opts.mib else f" at {t['mib']} MiB"
        return f"{speed(t, key):.0f} MiB/s ({med(t[key]):.2f} s){size}"

    def ratio_cell(name: str, kind: str) -> str:
        r = results[name]
        if "transfer" not in r:
            return "—"
        t = r["transfer"]
        ratio = med(t[f"direct_{kind}"]) / med(t[f"ours_{kind}"])
        if name in REFERENCE:
            return f"{ratio:.2f} (reference)"
        return f"**{ratio:.2f}** {'✓' if ratio >= SPEED_GOAL else '✗'}"

    def memory_cell(name: str) -> str:
        r = results[name]
        m = r.get("memory")
        if m is None:
            return "failed" if "memory_error" in r else "not run"
        growth = m["peak"] - m["before"]
        moved = (f"1 × {m['file_mib']} MiB" if m["files"] == 1
                 else f"{m['files']} × {m['file_mib']} MiB")
        return (f"**+{growth / MiB:.1f} MiB** {'✓' if growth < MEMORY_GOAL else '✗'} "
                f"({m['before'] / MiB:.0f} → {m['peak'] / MiB:.0f}; {moved}; after the first "
                f"upload alone +{(m['after_upload'] - m['before']) / MiB:.1f})")

    def ours_peak_cell(name: str) -> str:
        t = results[name].get("transfer")
        if t is None:
            return "—"
        return f"+{(t['ours_peak'] - t['ours_before']) / MiB:.1f} MiB"

    def db_cell(name: str) -> str:
        setup = setups.get(name)
        if setup is None or setup.db is None:
            return "— (no server)"
        if setup.db.external:
            return "— (external)"
        start, end = setup.db_start, setup.db_end
        if not start or not end:
            return "? (server gone)"
        return (f"{start['VmRSS'] / MiB:.0f} → peak {end['VmHWM'] / MiB:,.0f} MiB "
                f"(end {end['VmRSS'] / MiB:,.0f})")

    mib = opts.mib
    rows = [
        (f"Upload {mib} MiB, ours: `curl -T`, median of {opts.rounds}",
         lambda n: transfer_cell(n, "ours_up")),
        (f"Upload {mib} MiB, direct with the driver, median of {opts.rounds}",
         lambda n: transfer_cell(n, "direct_up")),
        (f"Upload speed ours/direct (goal ≥ {SPEED_GOAL})", lambda n: ratio_cell(n, "up")),
        (f"Download {mib} MiB, ours: `curl -o /dev/null`, median of {opts.rounds}",
         lambda n: transfer_cell(n, "ours_down")),
        (f"Download {mib} MiB, direct with the driver, median of {opts.rounds}",
         lambda n: transfer_cell(n, "direct_down")),
        (f"Download speed ours/direct (goal ≥ {SPEED_GOAL})", lambda n: ratio_cell(n, "down")),
        (f"Our server's RSS growth moving ~{opts.mem_mib} MiB up + down: peak − before "
         f"(goal < {MEMORY_GOAL // MiB} MiB)", memory_cell),
        (f"Our server's RSS growth during the {mib} MiB rounds above", ours_peak_cell),
        ("Database server's RSS: at start → peak (VmHWM), at the end", db_cell),
    ]
    lines = ["| Test | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    lines += ["| " + " | ".join([title, *(cell(n) for n in names)]) + " |" for title, cell in rows]
    lines += ["", "Ratios are speeds, ours/direct: ≥ 1.0 means ours is at least as fast as the "
              "driver alone on the same database server. embedded is a reference: its direct "
              "path is a local file, no network hop.", ""]
    for name in names:
        setup = setups.get(name)
        if setup is not None and setup.direct is not None:
            lines.append(f"- {name} direct: {setup.direct.how}")
    for name in names:
        setup = setups.get(name)
        if setup is not None and setup.db is not None:
            lines.append(f"- {name} database server: {setup.db_what}")
    if any(n in opts.mem_split for n in names):
        lines.append(f"- memory test moves one {opts.mem_mib} MiB file, except for "
                     f"{', '.join(n for n in names if n in opts.mem_split)}: files of the "
                     f"transfer size, up and down one after the other (the express-pouchdb "
                     f"test server keeps a whole attachment in memory, several times over)")
    for name in names:
        r = results[name]
        for note in r.get("notes", []):
            lines.append(f"- {name}: {note}")
        for key in ("error", "memory_error"):
            if key in r:
                lines.append(f"- {name}: {key.replace('_', ' ')}: {r[key]}")
    lines += [
        f"- ours: `fileserver serve --config INI {' '.join(SERVE_FLAGS)}` after "
        f"`fileserver init-db` (fileserver {version('fileserver')}, waitress "
        f"{version('waitress')}, bottle {version('bottle')}, pymongo {version('pymongo')})",
        f"- {tool_version(['curl', '--version'])}; Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; loopback {HOST}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}",
        f"- machine noise: load average {opts.load:.2f} at the start, {os.getloadavg()[0]:.2f} at "
        f"the end (this run adds its own); CPU time stolen by the hypervisor during the run: "
        f"{steal_percent(opts.cpu):.0f}%",
    ]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------


class TooLong(BaseException):  # not an Exception: no per-backend handler may swallow it
    pass


def _too_long(signum, frame) -> None:
    signal.signal(signum, signal.SIG_IGN)
    raise TooLong("--max-minutes reached; stopping")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated, in this order ({','.join(BACKENDS)})")
    parser.add_argument("--mib", type=int, default=200, help="transfer file size (200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per comparison (3)")
    parser.add_argument("--mem-mib", type=int, default=1024,
                        help="moved up and down for the memory test (1024)")
    parser.add_argument("--mem-split", default="couchdb",
                        help="backends whose memory test moves files of --mib size instead of "
                             "one big file (couchdb)")
    parser.add_argument("--no-fallback", dest="fallback", action="store_false",
                        help="don't retry failed transfers at half the size")
    parser.add_argument("--max-minutes", type=float, default=60,
                        help="stop everything after this long (60)")
    opts = parser.parse_args()
    opts.backends = [b.strip() for b in opts.backends.split(",") if b.strip()]
    opts.mem_split = {b.strip() for b in opts.mem_split.split(",") if b.strip()}
    unknown = [b for b in opts.backends if b not in SETUPS]
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")
    if not shutil.which("curl"):
        parser.error("curl is not installed")
    for key in [k for k in os.environ if k.startswith("FILESERVER_")]:
        del os.environ[key]  # they would override the INI file we write

    opts.load, opts.cpu = os.getloadavg()[0], cpu_times()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGALRM, _too_long)
    signal.setitimer(signal.ITIMER_REAL, opts.max_minutes * 60)
    work = Path(tempfile.mkdtemp(prefix="fileserver-bench-backends-"))
    setups: dict[str, Setup] = {}
    results: dict[str, dict] = {}
    try:
        big = work / "big.bin"
        log(f"writing {opts.mib} MiB of random bytes")
        big_sha = random_file(big, opts.mib * MiB)

        def huge() -> Path:
            path = work / "huge.bin"
            if not path.exists():
                log(f"writing {opts.mem_mib} MiB of random bytes")
                random_file(path, opts.mem_mib * MiB)
            return path

        for name in opts.backends:
            log(f"== {name}")
            try:
                setups[name] = SETUPS[name](work)
                results[name] = run_backend(setups[name], big, big_sha, huge, opts, work)
            except TooLong as exc:  # report what was measured before it
                log(str(exc))
                results[name] = {"error": str(exc)}
                break
            except Exception as exc:  # noqa: BLE001 -- one backend's failure keeps the others
                log(f"{name} failed: {type(exc).__name__}: {exc}")
                results[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            finally:
                if name in setups:
                    setups[name].close()  # frees the database server's memory for the next
        table = report(results, setups, opts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for setup in setups.values():
            setup.close()
        shutil.rmtree(work, ignore_errors=True)
    publish(table, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
