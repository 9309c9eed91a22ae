"""Clients nobody here wrote read a folder as a page of links, with no flags:
rclone's http remote, fsspec's HTTPFileSystem and ``wget -r``; REDbot lints
what the server answers. Each against a real ``fileserver serve`` on every
backend."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import fsspec
import pytest

# Three levels, awkward names included; sizes cross fsspec's block size.
TREE = {"top.txt": 1_000, "a/one.bin": 70_000, "a/b/two words.txt": 3,
        "a/b/ünïcödé.bin": 5_000_123, "a/b/c/three.bin": 0, "a/b/c/deep.txt": 12_345}


def tool(name: str) -> str:
    """The client's path; a missing client fails the test (tests/run installs it)."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: tests/run installs it with apt-get"
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(live_server) -> dict[str, bytes]:
    """TREE uploaded with curl: name -> content."""
    contents = {}
    for i, (name, size) in enumerate(TREE.items()):
        data = os.urandom(size) if name.endswith(".bin") else (b"line %d\n" % i * size)[:size]
        url = live_server.url + "files/" + quote(name)
        subprocess.run([tool("curl"), "-sSf", "-o", "/dev/null", "-T", "-", url],
                       input=data, check=True, timeout=60)
        contents[name] = data
    return contents


def folders_of(names) -> set[str]:
    return {"/".join(n.split("/")[:i]) + "/" for n in names for i in range(1, n.count("/") + 1)}


def local_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p.read_bytes())
            for p in root.rglob("*") if p.is_file()}


def rclone(*args: str, tmp_path: Path) -> str:
    config = tmp_path / "rclone.conf"
    config.touch()
    proc = subprocess.run([tool("rclone"), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_rclone_lists_and_copies_the_tree(live_server, tree, tmp_path):
    remote = ["--http-url", live_server.url + "files/", ":http:"]
    listed = rclone("lsf", "-R", *remote, tmp_path=tmp_path).splitlines()
    assert sorted(listed) == sorted(set(tree) | folders_of(tree))
    rclone("copy", *remote, str(tmp_path / "copy"), tmp_path=tmp_path)
    assert local_files(tmp_path / "copy") == {n: sha256(d) for n, d in tree.items()}


def test_fsspec_lists_finds_and_seeks(live_server, tree):
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    root = live_server.url + "files/"
    url = {name: root + quote(name) for name in tree}
    assert sorted(fs.ls(root, detail=False)) == [root + "a/", url["top.txt"]]
    assert sorted(fs.ls(root + "a/", detail=False)) == [root + "a/b/", url["a/one.bin"]]
    assert fs.isdir(root + "a/b/") and fs.isfile(url["a/b/c/deep.txt"])
    assert sorted(fs.find(root)) == sorted(url.values())
    name = "a/b/ünïcödé.bin"
    with fs.open(url[name], "rb") as f:
        f.seek(4_000_000)
        assert f.read(100_000) == tree[name][4_000_000:4_100_000]
        f.seek(17)
        assert f.read(10) == tree[name][17:27]
    assert fs.cat(url["a/b/two words.txt"]) == tree["a/b/two words.txt"]


def test_wget_mirrors_the_tree_fetching_each_file_once(live_server, tree, tmp_path):
    proc = subprocess.run([tool("wget"), "-r", "-np", "-nH", "--cut-dirs=1", "-nv",
                           "-P", str(tmp_path / "mirror"), live_server.url + "files/"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fetched = re.findall(r"URL:(\S+) \[", proc.stderr)
    files = [u for u in fetched if not u.endswith("/")]
    assert sorted(files) == sorted(live_server.url + "files/" + quote(n) for n in tree), fetched
    mirrored = local_files(tmp_path / "mirror")
    assert {n: h for n, h in mirrored.items() if not n.endswith("index.html")} == {
        n: sha256(d) for n, d in tree.items()}
    pages = [u for u in fetched if u.endswith("/")]
    assert len(pages) == len(set(pages)) == len(folders_of(tree)) + 1  # every folder, once


def redbot_notes(url: str) -> list[dict]:
    """REDbot's notes on one URL (its HAR output carries each note's level)."""
    redbot = str(Path(sys.executable).with_name("redbot"))
    proc = subprocess.run([redbot, "-o", "har", url], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)["log"]["entries"]
    assert entries and entries[0]["response"]["status"] == 200, entries
    return entries[0]["_red_messages"]


def test_redbot_finds_nothing_to_warn_about(live_server, tree):
    base = live_server.url
    # (files larger than REDbot's 96-byte range sample: a range covering a
    # whole file gets 206, as media players need for bytes=0-, and REDbot warns)
    for path in ("files/top.txt", "files/a/one.bin", "files/", "files/a/",
                 "files/?format=json", "files/?format=text", "login", "static/style.css"):
        notes = redbot_notes(base + path)
        bad = [f"{n['level']} {n['note_id']}: {n['summary']}" for n in notes
               if n["level"] in ("WARN", "BAD")]
        assert not bad, (path, bad)
        if path != "login":  # files, listings and assets revalidate with their ETag
            assert any(n["note_id"] == "INM_304" for n in notes), (path, notes)
