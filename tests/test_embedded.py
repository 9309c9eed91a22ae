"""What only the embedded store promises: crash safety on local disk and one
process per data directory."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import embedded_contents, start_server
from fileserver.errors import ConfigError
from fileserver.store import Upload
from fileserver_embedded import EmbeddedStore
from fileserver_embedded.files import INLINE_MAX, _Pending

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
        # leftovers swept: old-file's blob file, other's content inline
        assert embedded_contents(root) == {"blobs": 1, "inline": 1, "tmp": 0}
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


@pytest.mark.parametrize("size", [0, 1, INLINE_MAX, INLINE_MAX + 1, 3 * INLINE_MAX])
def test_small_files_live_in_the_index_and_large_ones_in_blob_files(tmp_path, size):
    store = EmbeddedStore(tmp_path)
    try:
        data = os.urandom(size)
        store.put("f", io.BytesIO(data))
        inline = size <= INLINE_MAX
        assert embedded_contents(tmp_path) == {"blobs": 0 if inline else 1,
                                               "inline": 1 if inline else 0, "tmp": 0}
        with store.open("f", start=size // 3) as f:
            assert f.read() == data[size // 3:]
        store.put("f", io.BytesIO(b"small now"))  # large -> small and back: the old content goes
        store.put("f", io.BytesIO(data))
        with store.open("f") as f:
            assert f.read() == data
        assert embedded_contents(tmp_path)["blobs"] + embedded_contents(tmp_path)["inline"] == 1
        store.delete("f")
        assert embedded_contents(tmp_path) == {"blobs": 0, "inline": 0, "tmp": 0}
    finally:
        store.close()


def test_uploads_finishing_together_share_a_commit_and_each_gets_its_own_answer(tmp_path):
    store = EmbeddedStore(tmp_path)
    commits = []
    real = store._transaction
    store._transaction = lambda batch: (commits.append(len(batch)), real(batch))[1]
    try:
        store.put("same", io.BytesIO(b"first"))

        def upload(i):
            name = "same" if i % 4 == 0 else f"f{i}"
            return name, store.put(name, io.BytesIO(f"content {i}".encode()))

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(upload, range(200)))
        assert max(commits) > 1, "no two uploads ever shared a transaction"
        assert sum(commits) == 201
        for name, (info, created) in answers:
            assert created == (name != "same")
        with store.open("same") as f:
            assert f.read().startswith(b"content ")
        assert len(store.list(limit=1000).files) == 1 + 150
        assert embedded_contents(tmp_path) == {"blobs": 0, "inline": 151, "tmp": 0}
    finally:
        store.close()


def test_a_failing_upload_in_a_shared_commit_fails_alone(tmp_path):
    store = EmbeddedStore(tmp_path)
    try:
        store.put("taken", io.BytesIO(b"x"))
        good = _Pending("good", _complete_upload(b"good"), None, b"good")
        bad = _Pending("bad", _complete_upload(b"bad", content_type=None), None, b"bad")
        store._write_batch([good, bad])  # content_type is NOT NULL: bad's row is refused
        assert good.result[1] is True and good.error is None
        assert isinstance(bad.error, sqlite3.IntegrityError) and bad.result is None
        assert [f.name for f in store.list().files] == ["good", "taken"]
        assert embedded_contents(tmp_path)["inline"] == 2  # bad's content went with its row
    finally:
        store.close()


def _complete_upload(data: bytes, content_type: str | None = "application/octet-stream"):
    upload = Upload(io.BytesIO(data), content_type=content_type or "", owner=None,
                    meta={}, max_size=None, length=None)
    upload.content_type = content_type
    while upload.read(1 << 16):
        pass
    return upload


def test_a_failed_early_sync_fails_the_upload(tmp_path, monkeypatch):
    """Linux reports a failed writeback to one fsync only: an error of the
    helper's early fdatasync must fail the upload, not vanish with its thread."""
    from fileserver_embedded import durable

    monkeypatch.setattr(durable.EarlySync, "EVERY", 1024 * 1024)
    real = os.fdatasync
    calls = []

    def failing(fd):
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    store = EmbeddedStore(tmp_path)
    try:
        monkeypatch.setattr(durable.os, "fdatasync", failing)
        with pytest.raises(OSError, match="Input/output"):
            store.put("big", io.BytesIO(os.urandom(3 * 1024 * 1024)))
        assert calls, "no early sync ran"
        monkeypatch.setattr(durable.os, "fdatasync", real)
        assert store.list().files == []
        assert embedded_contents(tmp_path) == {"blobs": 0, "inline": 0, "tmp": 0}
    finally:
        store.close()
