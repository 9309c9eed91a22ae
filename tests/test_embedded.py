"""What only the embedded store promises: crash safety on local disk and one
process per data directory."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from conftest import start_server
from fileserver.errors import ConfigError
from fileserver_embedded import EmbeddedStore

# Writes "victim" slowly through the store until the test kills the process.
SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from fileserver_embedded import EmbeddedStore

    class Slow:
        def read(self, n):
            time.sleep(0.01)
            return b"z" * min(n, 65536)

    store = EmbeddedStore(sys.argv[1])
    print("writing", flush=True)
    store.put(sys.argv[2], Slow())
""")


def _wait_for_partial_upload(root, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = list((root / "tmp").glob("*.part"))
        if parts and parts[0].stat().st_size > 256 * 1024:
            return
        time.sleep(0.02)
    raise AssertionError("the writer never started writing")


@pytest.mark.parametrize("victim", ["new-file", "old-file"])
def test_kill_mid_upload_leaves_nothing_partial(tmp_path, victim):
    root = tmp_path / "data"
    store = EmbeddedStore(root)
    old = os.urandom(500_000)
    store.put("old-file", io.BytesIO(old))
    store.put("other", io.BytesIO(b"intact"))
    store.close()

    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(root), victim],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        _wait_for_partial_upload(root)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()

    store = EmbeddedStore(root)  # the killed process's lock is gone with it
    try:
        names = [f.name for f in store.list().files]
        assert names == ["old-file", "other"]
        with store.open("old-file") as f:
            assert f.read() == old
        with store.open("other") as f:
            assert f.read() == b"intact"
        assert list((root / "tmp").iterdir()) == []  # leftovers swept
        blobs = [p for d in (root / "blobs").iterdir() for p in d.iterdir()]
        assert len(blobs) == 2
    finally:
        store.close()


def test_orphans_are_swept_after_an_unclean_stop_only(tmp_path):
    root = tmp_path / "data"
    store = EmbeddedStore(root)
    store.put("kept", io.BytesIO(b"kept"))
    store.close()
    assert (root / "clean-shutdown").exists()
    orphan = root / "blobs" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")

    store = EmbeddedStore(root)  # clean stop before: no full scan
    assert not (root / "clean-shutdown").exists() and orphan.exists()
    store._lockfile.close()  # the process dies without closing the store
    for db in store._connections:
        db.close()

    store = EmbeddedStore(root)  # unclean stop before: orphans go
    try:
        assert not orphan.exists()
        with store.open("kept") as f:
            assert f.read() == b"kept"
    finally:
        store.close()


def test_one_process_per_data_dir(tmp_path):
    store = EmbeddedStore(tmp_path)
    try:
        with pytest.raises(ConfigError, match="in use by another fileserver process"):
            EmbeddedStore(tmp_path)
    finally:
        store.close()
    EmbeddedStore(tmp_path).close()  # free again once closed


def test_unusable_data_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="data_dir"):
        EmbeddedStore(blocker / "sub")


def test_fsync_option(tmp_path):
    from fileserver.config import Settings

    settings = Settings(data_dir=str(tmp_path))
    store = EmbeddedStore.from_config(settings, {"fsync": "false"})
    try:
        assert store.fsync is False
        store.put("f", io.BytesIO(b"x"))
        with store.open("f") as f:
            assert f.read() == b"x"
    finally:
        store.close()
    with pytest.raises(ConfigError, match="fsync: 'sometimes'"):
        EmbeddedStore.from_config(settings, {"fsync": "sometimes"})


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs (the tests run as root, as tests/run does in CI)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a small tmpfs: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_507_and_nothing_is_half_written(small_disk, tmp_path):
    server = start_server(tmp_path / "srv", f"[fileserver]\ndata_dir = {small_disk / 'data'}\n")
    try:
        def put(name: str, data: bytes) -> tuple[int, dict]:
            request = urllib.request.Request(server.url + "files/" + name, data=data,
                                             method="PUT")
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        assert put("small.bin", b"s" * 1000)[0] == 201
        status, body = put("big.bin", os.urandom(8 * 1024 * 1024))
        assert status == 507 and body["status"] == 507
        assert "is full" in body["error"] and "nothing was stored" in body["error"]
        assert list((small_disk / "data" / "tmp").iterdir()) == []  # no partial upload left
        assert put("after.bin", b"a" * 1000)[0] == 201  # still serving, space is back
        with urllib.request.urlopen(server.url + "files/?format=json", timeout=30) as listing:
            assert [f["name"] for f in json.loads(listing.read())["files"]] == [
                "after.bin", "small.bin"]
        assert "Traceback" not in server.output()
    finally:
        server.stop()
