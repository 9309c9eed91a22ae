"""Shared fixtures: one store factory per backend, WebTest apps, live servers.

Every test that takes ``store``, ``make_store``, ``app`` or ``live_server``
runs once per backend in ``BACKENDS``. A new backend adds one entry there
(and, if it needs a database server, a session fixture that starts it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import webtest

from fileserver import Settings, create_app
from fileserver.backends import load_backend
from fileserver.store import Store
from servers import RunningCouchDB, start_couchdb, start_mongodb

# A CouchDB user that is no admin, only a member of the test databases,
# the way an operator would run the server (init-db runs as admin).
COUCH_USER, COUCH_PASSWORD = "fileserver", "member-secret"


@dataclass
class Backend:
    """How the suites get a fresh, empty store of one backend."""

    name: str
    #: scratch dir -> ``[backend.NAME]`` options for a new, empty store
    fresh_options: Callable[[Path], dict[str, str]]
    #: credentials for init_db where the store's own are not enough
    admin_url: str | None = None
    #: the Store class, where it is no installed entry point (tests/memory_backend.py)
    store_class: type[Store] | None = None

    @property
    def cls(self) -> type[Store]:
        return self.store_class or load_backend(self.name)

    def settings(self, root: Path, max_size: int | None = None,
                 collections=None) -> tuple[Settings, dict]:
        """A new, empty store's settings, set up by init-db for ``collections``
        (default: every collection the core and the installed features declare)."""
        options = self.fresh_options(root)
        settings = Settings(backend=self.name, data_dir=str(root / "data"),
                            max_upload_size=max_size, backend_options={self.name: options})
        if collections is None:
            from fileserver.features import all_collections

            collections = all_collections()
        self.cls.init_db(settings, options, admin_url=self.admin_url, collections=collections)
        return settings, options

    def make(self, root: Path, max_size: int | None = None) -> Store:
        settings, options = self.settings(root, max_size)
        return self.cls.from_config(settings, options)

    def config(self, root: Path) -> str:
        """INI text that makes `fileserver serve` use a new, empty store."""
        settings, options = self.settings(root)
        lines = ["[fileserver]", f"backend = {self.name}", f"data_dir = {settings.data_dir}",
                 "", f"[backend.{self.name}]"]
        lines += [f"{key} = {value}" for key, value in options.items()]
        return "\n".join(lines) + "\n"


_counter = iter(range(10**9))


def embedded_contents(root: Path) -> dict[str, int]:
    """What an embedded data directory holds below the store's API: blob files,
    inline contents (small files, in the index) and partial uploads."""
    import sqlite3

    index = sqlite3.connect(root / "index.sqlite3")
    try:
        inline = index.execute("SELECT count(*) FROM inline").fetchone()[0]
    finally:
        index.close()
    return {"blobs": sum(1 for p in (root / "blobs").rglob("*") if p.is_file()),
            "inline": inline, "tmp": sum(1 for _ in (root / "tmp").iterdir())}


def _unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def _embedded(request) -> Backend:
    return Backend("embedded", lambda root: {"path": str(root / "embedded-data")})


def _couchdb(request) -> Backend:
    server: RunningCouchDB = request.getfixturevalue("couchdb_server")
    member_url = server.user_url(COUCH_USER, COUCH_PASSWORD)
    return Backend("couchdb", lambda root: {"url": member_url, "database": _unique("files-")},
                   admin_url=server.admin_url)


def _gridfs(request) -> Backend:
    server = request.getfixturevalue("mongodb_server")
    return Backend("gridfs", lambda root: {"uri": server.uri, "database": _unique("fs"),
                                           "bucket": "fs"})


def _memory(request) -> Backend:
    from memory_backend import MemoryStore

    return Backend("memory", lambda root: {"name": _unique("mem")}, store_class=MemoryStore)


#: backend name -> how to set it up (given the pytest request, for server fixtures)
BACKENDS: dict[str, Callable] = {"couchdb": _couchdb, "embedded": _embedded, "gridfs": _gridfs}
#: ... plus the in-memory test backend, for the in-process contract and mosaic suites
#: (it is no installed entry point, so `fileserver serve` cannot run it)
CONTRACT_BACKENDS: dict[str, Callable] = {**BACKENDS, "memory": _memory}


@pytest.fixture(scope="session")
def couchdb_server(tmp_path_factory):
    server = start_couchdb(tmp_path_factory.mktemp("couchdb"))
    _ensure_couch_user(server)
    yield server
    server.stop()


def _ensure_couch_user(server: RunningCouchDB) -> None:
    import couchdb  # the test extra

    users = couchdb.Server(server.admin_url)["_users"]
    doc_id = f"org.couchdb.user:{COUCH_USER}"
    if doc_id not in users:
        users[doc_id] = {"name": COUCH_USER, "password": COUCH_PASSWORD, "roles": [],
                         "type": "user"}


@pytest.fixture(scope="session")
def mongodb_server(tmp_path_factory):
    server = start_mongodb(tmp_path_factory.mktemp("mongodb"))
    yield server
    server.stop()


# -- the headless browser for the page tests ----------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright  # the test extra; only browser tests need it

    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request) -> Backend:
    return BACKENDS[request.param](request)


@pytest.fixture
def make_store(backend, tmp_path):
    """Factory: ``make_store(max_size=None)`` -> a fresh store of this backend."""
    stores: list[Store] = []

    def make(max_size: int | None = None) -> Store:
        stores.append(backend.make(tmp_path / f"s{len(stores)}", max_size))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


@pytest.fixture
def make_app(make_store):
    def make(max_size: int | None = None) -> webtest.TestApp:
        app = create_app(Settings(max_upload_size=max_size), store=make_store(max_size),
                         catchall=False)
        return webtest.TestApp(app)

    return make


@pytest.fixture
def app(make_app) -> webtest.TestApp:
    return make_app()


# -- live servers: the real `fileserver serve` process -------------------------------


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    workdir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode


def start_server(workdir: Path, config_text: str, *args: str, timeout: float = 30) -> LiveServer:
    """Start `python -m fileserver serve` on a free loopback port; wait for its URL line.

    Output goes to a log file (a pipe nobody reads would block the server).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "fileserver.ini"
    config.write_text(config_text)
    log = workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fileserver", "serve", "--config", str(config),
             "--host", "127.0.0.1", "--port", "0", *args],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"serving (http://\S+/) ", log.read_text(errors="replace"))
        if match:
            return LiveServer(match.group(1), process, workdir, log)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"fileserver serve did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture
def live_server(backend, tmp_path):
    """A running `fileserver serve` on this backend; its URL ends in '/'."""
    server = start_server(tmp_path / "server", backend.config(tmp_path / "server"))
    yield server
    server.stop()
