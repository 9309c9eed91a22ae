"""Real database servers for the tests, started on loopback by the tests themselves.

- ``start_couchdb(workdir)``: a CouchDB-API server made from the npm packages
  express-pouchdb + pouchdb-core (``tests/servers/couchdb/server.js``). Its
  npm packages are installed on first use into ``.test-tools/couchdb/``
  (ignored by git) from the committed package.json/package-lock.json, and
  reinstalled only when those change. Needs ``node`` and ``npm``.
- ``start_mongodb(workdir)``: SecantusDB's ``secantusd-py``, a MongoDB-wire
  server. SecantusDB is GPL: it only ever runs as a separate process and is
  never imported here. ``tests/run`` pip-installs it into the test virtualenv;
  its console script is looked up next to ``sys.executable``.

Set ``COUCHDB_URL`` (an admin URL, ``http://admin:pass@host:5984/``) or
``MONGODB_URI`` to use real servers instead: then nothing is started and
``stop()`` does nothing.

A server that does not answer within ``timeout`` seconds raises RuntimeError
with the tail of its log; nothing here skips.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COUCHDB_SOURCE = Path(__file__).resolve().parent / "couchdb"
COUCHDB_TOOLS = REPO / ".test-tools" / "couchdb"
SECANTUS_REQUIREMENT = "SecantusDB==0.7.0b3"

COUCHDB_ADMIN_USER = "admin"
COUCHDB_ADMIN_PASSWORD = "pass"

_started: list[subprocess.Popen] = []


@dataclass(kw_only=True)
class Running:
    """A server the tests use. ``process`` and ``log`` are None for an external one."""

    process: subprocess.Popen | None = None
    log: Path | None = None
    started_in: float = 0.0  # seconds from Popen to answering

    @property
    def external(self) -> bool:
        return self.process is None

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log, lines) if self.log else ""

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.process is None:
            return None
        _stop_process(self.process, timeout)
        return self.process.returncode


@dataclass(kw_only=True)
class RunningCouchDB(Running):
    url: str  # http://127.0.0.1:PORT/ -- no credentials, ends in '/'
    admin_url: str  # http://admin:pass@127.0.0.1:PORT/
    admin_user: str
    admin_password: str

    def user_url(self, name: str, password: str) -> str:
        """The server URL with another user's credentials in it."""
        parts = urllib.parse.urlsplit(self.url)
        netloc = f"{urllib.parse.quote(name, safe='')}:{urllib.parse.quote(password, safe='')}"
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc}@{parts.netloc}"))

    def log_tail(self, lines: int = 60) -> str:
        text = super().log_tail(lines)
        if self.log is not None:
            couch_log = self.log.parent / "data" / "log.txt"
            if couch_log.exists():
                text += f"\n--- {couch_log} ---\n" + _tail(couch_log, lines)
        return text


@dataclass(kw_only=True)
class RunningMongoDB(Running):
    uri: str  # mongodb://127.0.0.1:PORT/?directConnection=true


# -- CouchDB API (express-pouchdb) ---------------------------------------------------


def start_couchdb(workdir: Path, timeout: float = 60, *, port: int = 0) -> RunningCouchDB:
    """A CouchDB-API server with data under ``workdir``, or the one in COUCHDB_URL.

    ``port`` 0 picks a free one; give the old port to restart on the same data.
    """
    if os.environ.get("COUCHDB_URL"):
        return _external_couchdb(os.environ["COUCHDB_URL"])
    node_modules = ensure_couchdb_tools()
    node = _which("node", "Node.js is needed for the CouchDB test server (apt-get install nodejs)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "couchdb.log"
    env = dict(os.environ, NODE_PATH=str(node_modules),
               COUCHDB_ADMIN_USER=COUCHDB_ADMIN_USER,
               COUCHDB_ADMIN_PASSWORD=COUCHDB_ADMIN_PASSWORD)
    began = time.monotonic()
    process = _popen([node, str(COUCHDB_SOURCE / "server.js"), "--host", "127.0.0.1",
                      "--port", str(port), "--dir", str(workdir / "data")], workdir, log, env)
    server = RunningCouchDB(process=process, log=log, url="", admin_url="",
                            admin_user=COUCHDB_ADMIN_USER, admin_password=COUCHDB_ADMIN_PASSWORD)
    port = _wait_for_port(server, r"^listening 127\.0\.0\.1:(\d+)$", began + timeout, "CouchDB")
    server.url = f"http://127.0.0.1:{port}/"
    server.admin_url = server.user_url(COUCHDB_ADMIN_USER, COUCHDB_ADMIN_PASSWORD)
    _wait_until(server, lambda: _couchdb_answers(server.url), began + timeout, "CouchDB")
    server.started_in = time.monotonic() - began
    return server


def ensure_couchdb_tools() -> Path:
    """``npm ci`` the CouchDB test server's packages once; returns its node_modules.

    Skipped when ``.test-tools/couchdb`` already holds an install of the
    committed package.json + package-lock.json.
    """
    files = ("package.json", "package-lock.json")
    digest = hashlib.sha256(b"".join((COUCHDB_SOURCE / f).read_bytes() for f in files)).hexdigest()
    node_modules = COUCHDB_TOOLS / "node_modules"
    stamp = COUCHDB_TOOLS / ".installed"

    def installed() -> bool:
        return node_modules.is_dir() and stamp.exists() and stamp.read_text().strip() == digest

    if installed():
        return node_modules
    COUCHDB_TOOLS.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(COUCHDB_TOOLS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (parallel test runs)
        if installed():
            return node_modules
        npm = _which("npm", "npm is needed for the CouchDB test server (apt-get install npm)")
        for f in files:
            shutil.copyfile(COUCHDB_SOURCE / f, COUCHDB_TOOLS / f)
        stamp.unlink(missing_ok=True)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=COUCHDB_TOOLS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"`npm ci` in {COUCHDB_TOOLS} failed "
                               f"(exit {result.returncode}):\n{result.stdout[-4000:]}")
        stamp.write_text(digest + "\n")
    return node_modules


def _external_couchdb(admin_url: str) -> RunningCouchDB:
    if not admin_url.endswith("/"):
        admin_url += "/"
    parts = urllib.parse.urlsplit(admin_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    url = urllib.parse.urlunsplit(parts._replace(netloc=host))
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    server = RunningCouchDB(url=url, admin_url=admin_url, admin_user=user, admin_password=password)
    if not _couchdb_answers(url):
        raise RuntimeError(f"COUCHDB_URL {url} does not answer GET / with JSON")
    return server


def _couchdb_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return isinstance(json.load(response), dict)
    except (OSError, ValueError):
        return False


# -- MongoDB wire (SecantusDB) -------------------------------------------------------


def start_mongodb(workdir: Path, timeout: float = 60, *, port: int = 0) -> RunningMongoDB:
    """A MongoDB-wire server with data under ``workdir``, or the one in MONGODB_URI.

    ``port`` 0 picks a free one; give the old port to restart on the same data.
    """
    if os.environ.get("MONGODB_URI"):
        server = RunningMongoDB(uri=os.environ["MONGODB_URI"])
        if not _mongodb_answers(server.uri, timeout_ms=10_000):
            raise RuntimeError(f"MONGODB_URI {server.uri} does not answer ping")
        return server
    secantusd = secantusd_executable()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "mongodb.log"
    began = time.monotonic()
    # cwd=workdir: secantusd-py also looks for ./secantusd.toml
    process = _popen([secantusd, "--host", "127.0.0.1", "--port", str(port),
                      "--storage-path", str(workdir / "data")], workdir, log, dict(os.environ))
    server = RunningMongoDB(process=process, log=log, uri="")
    port = _wait_for_port(server, r"listening on 127\.0\.0\.1:(\d+)\s*$", began + timeout,
                          "SecantusDB")
    server.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    _wait_until(server, lambda: _mongodb_answers(server.uri), began + timeout, "SecantusDB")
    server.started_in = time.monotonic() - began
    return server


def secantusd_executable() -> str:
    """``secantusd-py`` next to this Python (the test virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    return _which("secantusd-py", f"{SECANTUS_REQUIREMENT} is not installed next to "
                  f"{sys.executable}: tests/run installs it "
                  f"(or: {sys.executable} -m pip install '{SECANTUS_REQUIREMENT}')")


def _mongodb_answers(uri: str, timeout_ms: int = 1000) -> bool:
    import pymongo
    import pymongo.errors

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms,
                                 connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms * 5)
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


# -- processes -----------------------------------------------------------------------


def _popen(argv: list[str], cwd: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a server with its output in ``log`` (a pipe nobody reads would block it)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
    _started.append(process)
    return process


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the test process dies without stopping it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 -- best effort, elsewhere atexit still helps
        pass


def _stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if process in _started:
        _started.remove(process)


@atexit.register
def _stop_all() -> None:
    for process in list(_started):
        _stop_process(process, 5)


def _wait_for_port(server: Running, pattern: str, deadline: float, what: str) -> int:
    regex = re.compile(pattern, re.MULTILINE)
    while True:
        match = regex.search(server.log.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        _check_alive(server, deadline, what)
        time.sleep(0.05)


def _wait_until(server: Running, answers, deadline: float, what: str) -> None:
    while not answers():
        _check_alive(server, deadline, what)
        time.sleep(0.1)


def _check_alive(server: Running, deadline: float, what: str) -> None:
    process = server.process
    if process.poll() is not None:
        raise RuntimeError(f"{what} test server exited with {process.returncode} "
                           f"before answering ({' '.join(map(str, process.args))}):\n"
                           f"{server.log_tail()}")
    if time.monotonic() > deadline:
        server.stop()
        raise RuntimeError(f"{what} test server did not answer in time "
                           f"({' '.join(map(str, process.args))}):\n{server.log_tail()}")


def _which(name: str, hint: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` not found: {hint}")
    return found


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"
