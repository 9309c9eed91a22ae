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
from fileserver.store import Store
from fileserver_plugins.embedded import EmbeddedStore


def _embedded(root: Path, max_size: int | None) -> Store:
    return EmbeddedStore(root / "embedded-data", max_size=max_size)


def _embedded_config(root: Path) -> str:
    return f"[fileserver]\nbackend = embedded\ndata_dir = {root / 'embedded-data'}\n"


@dataclass
class Backend:
    name: str
    #: (scratch dir, max_size) -> a fresh, empty store
    make: Callable[[Path, int | None], Store]
    #: scratch dir -> INI text that makes `fileserver serve` use this backend
    config: Callable[[Path], str]


BACKENDS: dict[str, Backend] = {
    "embedded": Backend("embedded", _embedded, _embedded_config),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request) -> Backend:
    return BACKENDS[request.param]


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
