"""Two `fileserver serve` processes on one database (CouchDB, MongoDB), as behind a
proxy: files, users, tokens, browser sessions, mosaic jobs and login throttling
agree between them, and a job whose process dies is reported failed."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import requests
from PIL import Image

from conftest import BACKENDS, start_server

PASSWORD = "alice-password"


def tiles_zip(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for n in range(count):
            colour = (n * 37 % 256, n * 91 % 256, n * 13 % 256)
            image = io.BytesIO()
            Image.new("RGB", (24, 24), colour).save(image, "PNG")
            archive.writestr(f"t{n:05d}.png", image.getvalue())
    return out.getvalue()


def poll(session: requests.Session, url: str, until, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = session.get(url, headers={"Accept": "application/json"}, timeout=30).json()
        if until(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


@pytest.fixture(params=["couchdb", "gridfs"])
def pair(request, tmp_path):
    backend = BACKENDS[request.param](request)
    config = backend.config(tmp_path / "a") + "\n[plugin.mosaic]\njob_stale_after = 3\n"
    (tmp_path / "shared.ini").write_text(config)
    added = subprocess.run([sys.executable, "-m", "fileserver", "user", "--config",
                            str(tmp_path / "shared.ini"), "add", "alice", "--role", "admin",
                            "--password-stdin"], input=PASSWORD + "\n", capture_output=True,
                           text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    servers = [start_server(tmp_path / name, config) for name in ("a", "b")]
    yield servers
    for server in servers:
        server.stop()
        assert "Traceback" not in server.output(), server.output()


def test_two_processes_agree(pair):
    a, b = pair
    alice = requests.Session()
    alice.auth = ("alice", PASSWORD)

    # files
    assert alice.put(a.url + "files/shared.txt", data=b"from a", timeout=30).status_code == 201
    got = alice.get(b.url + "files/shared.txt", timeout=30)
    assert got.content == b"from a" and got.headers["ETag"]

    # users and tokens: a token made on one process works on the other
    made = alice.post(a.url + "account/tokens", data={"label": "ci"},
                      headers={"Accept": "application/json"}, timeout=30)
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert requests.get(b.url + "account", headers={"Authorization": f"Bearer {token}",
                                                    "Accept": "application/json"},
                        timeout=30).json()["name"] == "alice"

    # browser sessions: a cookie from a's login page works on b
    browser = requests.Session()
    login = browser.post(a.url + "login", data={"name": "alice", "password": PASSWORD},
                         headers={"Accept": "application/json"}, timeout=30)
    assert login.status_code == 200, login.text
    cookies = {c.name: c.value for c in browser.cookies}
    page = requests.get(b.url + "account", cookies=cookies, timeout=30,
                        headers={"Accept": "text/html"})
    assert page.status_code == 200 and "alice" in page.text

    # jobs: started on a, followed on b to the end
    job = alice.post(a.url + "mosaic/tiles", data=tiles_zip(12), timeout=60,
                     headers={"Content-Type": "application/zip", "Prefer": "respond-async"})
    assert job.status_code == 202, job.text
    state = poll(alice, b.url + job.headers["Location"].lstrip("/"),
                 lambda s: s["state"] in ("done", "failed"))
    assert (state["state"], state["result"]["added"]) == ("done", 12), state
    assert alice.get(b.url + "mosaic/tiles?format=json", timeout=30).json()["count"] == 12

    # throttling: five wrong passwords on a, and b makes the sixth guess wait
    for _ in range(5):
        assert requests.get(a.url + "files/", auth=("alice", "guess-guess"),
                            timeout=30).status_code == 401
    sixth = requests.get(b.url + "files/", auth=("alice", "guess-guess"), timeout=30)
    assert sixth.status_code == 429 and int(sixth.headers["Retry-After"]) >= 1


def running_job(a, b) -> tuple[requests.Session, str]:
    """A long tile import started on ``a``, seen running from ``b``: (session, b's job URL)."""
    alice = requests.Session()
    alice.auth = ("alice", PASSWORD)
    job = alice.post(a.url + "mosaic/tiles", data=tiles_zip(400), timeout=60,
                     headers={"Content-Type": "application/zip", "Prefer": "respond-async"})
    assert job.status_code == 202, job.text
    url = b.url + job.headers["Location"].lstrip("/")
    running = poll(alice, url, lambda s: s["state"] == "running" and s["done"] > 0, timeout=60)
    assert running["state"] == "running", running
    return alice, url


def test_a_job_whose_process_died_is_reported_failed(pair):
    a, b = pair
    alice, url = running_job(a, b)
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(10)
    state = poll(alice, url, lambda s: s["state"] != "running", timeout=30)
    assert state["state"] == "failed" and state["status"] == 503, state
    assert "stopped" in state["error"] and "Start the job again" in state["error"]


def test_a_job_of_a_server_stopped_cleanly_is_failed_at_once(pair):
    """SIGTERM: the plugin's shutdown hook records the unfinished job as failed,
    without waiting for its heartbeat to go stale."""
    a, b = pair
    alice, url = running_job(a, b)
    assert a.stop(signal.SIGTERM) == 0
    state = alice.get(url, headers={"Accept": "application/json"}, timeout=30).json()
    assert state["state"] == "failed" and state["status"] == 503, state
    assert "server stopped before this job finished" in state["error"]
