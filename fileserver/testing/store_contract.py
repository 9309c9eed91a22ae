"""The files contract suite (``Store``), for any backend's own tests.

Use it from a test module with a ``store`` fixture that yields a fresh,
empty store of the backend under test, and ``make_store(max_size=None)``
making more::

    from fileserver.testing.store_contract import *  # noqa: F401,F403
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from datetime import datetime, timedelta, timezone

import pytest

from fileserver.errors import FileNotFound, IncompleteUpload, InvalidName, TooLarge
from fileserver.store import FileInfo, StoredFile


class Source:
    """A file-like body that records how it is read."""

    def __init__(self, data: bytes, fail_after: int | None = None):
        self._io = io.BytesIO(data)
        self.fail_after = fail_after
        self.largest_read = 0
        self.read_all_calls = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            self.read_all_calls += 1
        self.largest_read = max(self.largest_read, n if n and n > 0 else 0)
        if self.fail_after is not None and self._io.tell() >= self.fail_after:
            raise ConnectionResetError("client went away")
        return self._io.read(n)


def put_bytes(store, name, data, **kw):
    return store.put(name, io.BytesIO(data), **kw)


def read_all(store, name, *args) -> bytes:
    with store.open(name, *args) as f:
        return f.read()


def test_put_then_open_round_trip(store):
    data = os.urandom(300_000)
    info, created = put_bytes(store, "photos/a.bin", data)
    assert created is True
    assert info.name == "photos/a.bin"
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert read_all(store, "photos/a.bin") == data
    assert store.info("photos/a.bin") == info


def test_metadata_is_kept(store):
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    info, _ = put_bytes(store, "doc.txt", b"hi", owner="alice", meta={"tags": ["x"], "n": 1},
                        content_type="text/plain; charset=utf-8")
    stored = store.info("doc.txt")
    assert stored.owner == "alice"
    assert stored.meta == {"tags": ["x"], "n": 1}
    assert stored.content_type == "text/plain; charset=utf-8"
    assert stored.created.tzinfo is not None and stored.created >= before
    assert stored.modified == stored.created
    assert set(stored.to_dict()) >= {"name", "size", "content_type", "created", "modified",
                                     "sha256", "owner", "meta"}


@pytest.mark.parametrize("name, expected", [
    ("a.png", "image/png"), ("b.JPG", "image/jpeg"), ("c.webp", "image/webp"),
    ("d.unknownext", "application/octet-stream"), ("noext", "application/octet-stream"),
])
def test_content_type_is_guessed_when_not_given(store, name, expected):
    info, _ = put_bytes(store, name, b"x")
    assert info.content_type == expected


@pytest.mark.parametrize("name, data, given, expected", [
    ("a.txt", "héllo wörld ✓".encode(), None, "text/plain; charset=utf-8"),
    ("b.txt", "héllo".encode("latin-1"), None, "text/plain"),  # not UTF-8: no charset
    ("c.md", b"# plain ascii", None, "text/markdown; charset=utf-8"),
    ("d.csv", "a,b\n1,\u20ac\n".encode() * 300_000, None, "text/csv; charset=utf-8"),
    ("e.txt", b"x" * 1_000_000 + "é".encode()[:1], None, "text/plain"),  # cut mid-character
    ("f.txt", b"hi", "text/plain; charset=iso-8859-1", "text/plain; charset=iso-8859-1"),
    ("g.txt", b"hi", "text/x-log", "text/x-log; charset=utf-8"),
    ("h.bin", "é".encode(), "application/octet-stream", "application/octet-stream"),
])
def test_utf8_text_gets_its_charset_and_stays_byte_exact(store, name, data, given, expected):
    info, _ = put_bytes(store, name, data, content_type=given)
    assert info.content_type == expected == store.info(name).content_type
    assert read_all(store, name) == data


def test_put_streams_in_bounded_chunks(store):
    data = os.urandom(5 * 1024 * 1024)
    source = Source(data)
    info, _ = store.put("big.bin", source)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert source.read_all_calls == 0
    assert 0 < source.largest_read <= 4 * 1024 * 1024


def test_replace_keeps_created_and_reports_not_created(store):
    first, _ = put_bytes(store, "f", b"one")
    second, created = put_bytes(store, "f", b"two two")
    assert created is False
    assert second.created == first.created
    assert second.modified >= first.modified
    assert read_all(store, "f") == b"two two"
    assert store.info("f").size == 7


def test_empty_file(store):
    info, _ = put_bytes(store, "empty", b"")
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()
    assert read_all(store, "empty") == b""


def test_open_range_and_seek(store):
    data = os.urandom(2 * 1024 * 1024 + 17)
    put_bytes(store, "r", data)
    assert read_all(store, "r", 10, 20) == data[10:20]
    assert read_all(store, "r", len(data) - 5) == data[-5:]
    with store.open("r", 100, 1000) as f:
        assert isinstance(f, StoredFile)
        assert f.info.size == len(data)
        assert f.tell() == 100
        assert f.read(50) == data[100:150]
        if f.seekable():
            assert f.seek(0, 2) == 1000  # the end of the window
            f.seek(500)
            assert f.read() == data[500:1000]
        assert f.read() == b""


def test_missing_file(store):
    with pytest.raises(FileNotFound):
        store.info("nope")
    with pytest.raises(FileNotFoundError):
        store.open("nope")
    with pytest.raises(FileNotFound):
        store.delete("nope")
    assert store.exists("nope") is False


def test_delete(store):
    put_bytes(store, "gone", b"x")
    assert store.exists("gone")
    store.delete("gone")
    assert not store.exists("gone")
    assert store.list().files == []


BAD_NAMES = ["", "/etc/passwd", "../up", "a/../../b", "a/./b", "a//b", "folder/", ".", "..",
             "nul\x00byte", "line\nbreak", "tab\there", "del\x7f", "back\\slash", "x" * 1025,
             "bad\ud800surrogate", "non\uffffchar"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused_everywhere(store, name):
    with pytest.raises(InvalidName):
        put_bytes(store, name, b"x")
    for method in (store.info, store.open, store.delete):
        with pytest.raises(InvalidName):
            method(name)
    assert store.list().files == []


@pytest.mark.parametrize("name", ["日本語/ファイル.txt", "emoji 🎉.png", "spaces and 'quotes'.txt",
                                  "Ωmega", "a" * 200 + "/" + "b" * 200, "..hidden", "x..y"])
def test_unicode_and_unusual_but_valid_names(store, name):
    put_bytes(store, name, name.encode())
    assert read_all(store, name) == name.encode()
    assert [f.name for f in store.list().files] == [name]


def test_names_are_nfc_normalised(store):
    decomposed = "cafe\u0301.txt"
    put_bytes(store, decomposed, b"x")
    assert store.info("caf\u00e9.txt").name == "caf\u00e9.txt"


def test_list_prefix_order_and_pagination(store):
    names = [f"p/{i:03d}" for i in range(25)] + ["q/1", "p0"]
    for name in reversed(names):
        put_bytes(store, name, b"x")
    page = store.list("p/", limit=10)
    assert [f.name for f in page.files] == [f"p/{i:03d}" for i in range(10)]
    seen = []
    after = None
    while True:
        page = store.list("p/", after=after, limit=10)
        seen += [f.name for f in page.files]
        after = page.next_after
        if after is None:
            break
    assert seen == [f"p/{i:03d}" for i in range(25)]
    assert [f.name for f in store.list("p").files][-1] == "p0"
    assert all(isinstance(f, FileInfo) for f in store.list().files)


def test_list_with_delimiter_folds_folders(store):
    for name in ["a.txt", "docs/x", "docs/y/z", "docs2/q", "pics/1", "pics/2", "z.txt"]:
        put_bytes(store, name, b"x")
    top = store.list(delimiter="/")
    assert top.folders == ["docs/", "docs2/", "pics/"]
    assert [f.name for f in top.files] == ["a.txt", "z.txt"]
    inner = store.list("docs/", delimiter="/")
    assert inner.folders == ["docs/y/"]
    assert [f.name for f in inner.files] == ["docs/x"]
    # Pagination across folders and files, two entries a page.
    entries, after = [], None
    while True:
        page = store.list(delimiter="/", after=after, limit=2)
        entries += page.folders + [f.name for f in page.files]
        after = page.next_after
        if after is None:
            break
    assert sorted(entries) == ["a.txt", "docs/", "docs2/", "pics/", "z.txt"]


def test_size_limit_refuses_and_keeps_old_version(make_store):
    store = make_store(max_size=1000)
    put_bytes(store, "f", b"old")
    with pytest.raises(TooLarge):
        put_bytes(store, "f", b"x" * 1001)
    with pytest.raises(TooLarge):  # announced too large: refused before reading
        store.put("f", Source(b""), length=5000)
    with pytest.raises(TooLarge):
        put_bytes(store, "new", b"x" * 1001)
    assert read_all(store, "f") == b"old"
    assert [f.name for f in store.list().files] == ["f"]
    put_bytes(store, "exact", b"x" * 1000)
    assert store.info("exact").size == 1000


def test_truncated_upload_stores_nothing(store):
    put_bytes(store, "f", b"old")
    with pytest.raises(IncompleteUpload):
        store.put("f", io.BytesIO(b"only part"), length=100)
    with pytest.raises(IncompleteUpload):
        store.put("g", Source(os.urandom(3_000_000), fail_after=2_500_000))
    assert not [t for t in threading.enumerate() if t.name == "sha256"], "hash thread leaked"
    assert read_all(store, "f") == b"old"
    assert [f.name for f in store.list().files] == ["f"]


def test_reader_keeps_old_content_across_replace(store):
    old = os.urandom(3_000_000)
    put_bytes(store, "f", old)
    with store.open("f") as reader:
        head = reader.read(1000)
        put_bytes(store, "f", b"new")
        rest = reader.read()
    assert head + rest == old
    assert read_all(store, "f") == b"new"


def test_concurrent_writers_to_one_name_leave_one_complete_winner(store):
    bodies = [bytes([i]) * 1_500_000 for i in range(6)]
    errors = []

    def write(body):
        try:
            put_bytes(store, "contended", body)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = read_all(store, "contended")
    assert final in bodies
    assert store.info("contended").sha256 == hashlib.sha256(final).hexdigest()
    assert [f.name for f in store.list().files] == ["contended"]


def test_concurrent_readers_and_writers(store):
    versions = [os.urandom(200_000) for _ in range(4)]
    put_bytes(store, "busy", versions[0])
    problems = []

    def reader():
        for _ in range(40):
            with store.open("busy") as f:
                data = f.read()
                if data not in versions or hashlib.sha256(data).hexdigest() != f.info.sha256:
                    problems.append("read a mixed or mislabelled version")

    def writer():
        for i in range(20):
            put_bytes(store, "busy", versions[i % 4])

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


__all__ = [name for name in list(globals()) if name.startswith("test_")]
