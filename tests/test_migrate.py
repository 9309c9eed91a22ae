"""`fileserver migrate`: every file with its metadata, between each pair of backends."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from datetime import timedelta

import pytest
import webtest

from conftest import BACKENDS
from fileserver.errors import BackendUnavailable
from fileserver.migrate import Progress, Report, migrate

PAIRS = [(a, b) for a in sorted(BACKENDS) for b in sorted(BACKENDS) if a != b]
FILES = {
    "a.txt": b"alpha",
    "docs/été/notes.md": "é".encode() * 1000,
    "docs/big.bin": os.urandom(3 * 1024 * 1024 + 5),
    "empty": b"",
    "z/🎉.png": b"\x89PNG fake",
}


def fill(store):
    for name, data in FILES.items():
        store.put(name, io.BytesIO(data), owner="alice", meta={"from": name})


def same_time(a, b) -> bool:
    return abs(a - b) < timedelta(milliseconds=1)  # MongoDB keeps milliseconds


@pytest.fixture
def pair(request, tmp_path):
    source_name, target_name = request.param
    source = BACKENDS[source_name](request).make(tmp_path / "src")
    target = BACKENDS[target_name](request).make(tmp_path / "dst")
    yield source, target
    source.close()
    target.close()


@pytest.mark.parametrize("pair", PAIRS, indirect=True, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_migrate_copies_files_and_metadata(pair):
    source, target = pair
    fill(source)
    out = io.StringIO()
    report = migrate(source, target, out)
    assert (report.copied, report.skipped, report.failed) == (len(FILES), 0, [])
    for name, data in FILES.items():
        original, copied = source.info(name), target.info(name)
        assert copied.sha256 == hashlib.sha256(data).hexdigest() == original.sha256
        assert (copied.size, copied.content_type, copied.owner, copied.meta) == \
            (original.size, original.content_type, "alice", {"from": name})
        assert same_time(copied.created, original.created)
        assert same_time(copied.modified, original.modified)
        with target.open(name) as f:
            assert f.read() == data
    assert f"{len(FILES)}/{len(FILES)} files" in out.getvalue()

    again = migrate(source, target, io.StringIO())
    assert (again.copied, again.skipped) == (0, len(FILES))


def test_interrupted_migration_continues_where_it_stopped(make_store):
    source, target = make_store(), make_store()
    fill(source)
    real_put, calls = target.put, []

    def failing_put(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise BackendUnavailable("the database went away")
        return real_put(*args, **kwargs)

    target.put = failing_put
    with pytest.raises(BackendUnavailable):
        migrate(source, target, io.StringIO())
    target.put = real_put
    assert len(target.list().files) == 2  # nothing half-written from the third
    report = migrate(source, target, io.StringIO())
    assert (report.copied, report.skipped) == (len(FILES) - 2, 2)


def test_progress_line_shows_files_bytes_rate_and_eta():
    now = [100.0]
    progress = Progress(10, 10 * 1024 * 1024, io.StringIO(), clock=lambda: now[0])
    now[0] += 2
    line = progress.line(Report(files=5, bytes=5 * 1024 * 1024, copied=4, skipped=1))
    assert line == ("5/10 files, 5.0 MiB/10.0 MiB, 2.5 MiB/s, ETA 2 s "
                    "(4 copied, 1 already there, 0 failed)")


def test_migrate_command(tmp_path):
    source_dir, target_dir = tmp_path / "one", tmp_path / "two"
    (tmp_path / "one.ini").write_text(f"[fileserver]\ndata_dir = {source_dir}\n")
    (tmp_path / "two.ini").write_text(f"[fileserver]\ndata_dir = {target_dir}\n")
    from fileserver_embedded import EmbeddedStore

    store = EmbeddedStore(source_dir)
    fill(store)
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
    command = [sys.executable, "-m", "fileserver", "migrate", "--config",
               str(tmp_path / "one.ini"), "--to-config", str(tmp_path / "two.ini")]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"{len(FILES)} copied, 0 already there, 0 failed" in first.stdout
    assert f"{len(FILES)}/{len(FILES)} files" in first.stderr and "ETA" in first.stderr
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert f"0 copied, {len(FILES)} already there" in second.stdout
    copy = EmbeddedStore(target_dir)
    try:
        assert sorted(f.name for f in copy.list().files) == sorted(FILES)
    finally:
        copy.close()


CYCLE = [("embedded", "couchdb"), ("couchdb", "gridfs"), ("gridfs", "embedded")]


@pytest.mark.parametrize("pair", CYCLE, indirect=True, ids=[f"{a}-to-{b}" for a, b in CYCLE])
def test_migrate_copies_every_collection_so_the_copy_makes_mosaics(pair):
    """Users, tokens and the tile index move too: log in, use a token and make
    a mosaic on the destination without re-importing anything."""
    from PIL import Image

    from fileserver import Settings, create_app
    from fileserver.accounts import Accounts
    from test_mosaic import zip_of
    from test_mosaic_tiles import encode

    source, target = pair
    app = webtest.TestApp(create_app(Settings(anonymous="write"), store=source, catchall=False))
    tiles = {f"{r}.png": encode(Image.new("RGB", (16, 16), (r, 40, 200 - r)))
             for r in range(0, 200, 25)}
    assert app.post("/mosaic/tiles", zip_of(tiles), content_type="application/zip").json[
        "added"] == len(tiles)
    accounts = Accounts(source.documents())
    accounts.add("alice", "admin", "alice-password")
    _, token = accounts.new_token("alice", "laptop")
    key = accounts.session_key()

    report = migrate(source, target, io.StringIO())
    assert report.failed == [] and report.copied == len(tiles)
    assert report.documents_copied == report.documents >= len(tiles) + 3  # + user, token, key

    copy = Accounts(target.documents())
    assert copy.login("alice", "alice-password").role == "admin"
    assert copy.check_token(token).name == "alice"
    assert copy.session_key() == key  # browser sessions stay valid
    moved = webtest.TestApp(create_app(Settings(), store=target, catchall=False))
    auth = {"Authorization": f"Bearer {token}"}
    assert moved.get("/mosaic/tiles?format=json", headers=auth).json["count"] == len(tiles)
    made = moved.post("/mosaic", upload_files=[("image", "s.png", encode(
        Image.new("RGB", (40, 40), (100, 40, 100))))], params={"cols": "4"}, headers=auth,
        status=201).json
    assert made["tiles_used"] >= 1

    again = migrate(source, target, io.StringIO())
    assert again.documents_copied == 0 and again.documents == report.documents
