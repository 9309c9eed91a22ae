"""The documents contract suite, for any backend's own tests.

Use it from a test module with a ``documents`` fixture that yields a fresh,
empty ``Documents`` of the backend under test (and a ``documents_twin``
fixture yielding a second, independently opened one on the same data, as
another server process would)::

    from fileserver.testing.documents_contract import *  # noqa: F401,F403

Every test here is a plain function, so pytest collects the imported names.
"""

from __future__ import annotations

import threading
import time

import pytest

from fileserver.documents import (MAX_PAGE, CollectionSpec, DocumentExists, Documents,
                                  VersionConflict, counting)

#: What the suite declares: pass these to the backend's ``init_db`` first
#: where indexes need an administrator (a CouchDB design document).
COLLECTIONS = [CollectionSpec("things", ("colour", "size")), CollectionSpec("others", ("colour",))]


def _ready(documents: Documents) -> Documents:
    for spec in COLLECTIONS:
        documents.declare(spec.name, spec.indexed)
    return documents


def test_create_get_round_trip(documents):
    docs = _ready(documents)
    made = docs.create("things", "a1", {"colour": "red", "size": 3, "nested": {"k": [1, 2.5]}})
    got = docs.get("things", "a1")
    assert got == made and got.body == {"colour": "red", "size": 3, "nested": {"k": [1, 2.5]}}
    assert got.id == "a1" and isinstance(got.version, str) and got.version
    assert docs.get("things", "missing") is None


def test_create_is_create_only(documents):
    docs = _ready(documents)
    docs.create("things", "x", {"n": 1})
    with pytest.raises(DocumentExists):
        docs.create("things", "x", {"n": 2})
    assert docs.get("things", "x").body == {"n": 1}


def test_replace_checks_the_version(documents):
    docs = _ready(documents)
    first = docs.create("things", "x", {"n": 1})
    second = docs.replace("things", "x", {"n": 2}, first.version)
    assert second.version != first.version and docs.get("things", "x") == second
    with pytest.raises(VersionConflict):
        docs.replace("things", "x", {"n": 3}, first.version)  # stale version
    assert docs.get("things", "x").body == {"n": 2}
    with pytest.raises(VersionConflict):
        docs.replace("things", "nobody", {"n": 1}, first.version)  # gone / never there


def test_two_writers_one_wins(documents):
    """Many threads replace from the same version: exactly one succeeds."""
    docs = _ready(documents)
    base = docs.create("things", "race", {"n": 0})
    wins, conflicts, barrier = [], [], threading.Barrier(6)

    def writer(n):
        barrier.wait()
        try:
            wins.append(docs.replace("things", "race", {"n": n}, base.version))
        except VersionConflict:
            conflicts.append(n)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(conflicts) == 5
    assert docs.get("things", "race").body == wins[0].body


def test_two_creators_one_wins(documents):
    docs = _ready(documents)
    made, refused, barrier = [], [], threading.Barrier(5)

    def creator(n):
        barrier.wait()
        try:
            made.append(docs.create("things", "new", {"n": n}))
        except DocumentExists:
            refused.append(n)

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(refused) == 4


def test_delete(documents):
    docs = _ready(documents)
    first = docs.create("things", "d", {"n": 1})
    docs.replace("things", "d", {"n": 2}, first.version)
    with pytest.raises(VersionConflict):
        docs.delete("things", "d", first.version)
    assert docs.get("things", "d") is not None
    assert docs.delete("things", "d") is True
    assert docs.get("things", "d") is None and docs.delete("things", "d") is False
    again = docs.create("things", "d", {"n": 3})  # a deleted id can be created anew
    assert docs.delete("things", "d", again.version) is True


def test_two_deleters_one_wins(documents):
    docs = _ready(documents)
    docs.create("things", "gone", {"n": 1})
    results, barrier = [], threading.Barrier(6)

    def deleter():
        barrier.wait()
        results.append(docs.delete("things", "gone"))

    threads = [threading.Thread(target=deleter) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert docs.get("things", "gone") is None


def test_find_answers_a_batch_in_one_query(documents):
    docs = _ready(documents)
    for n in range(30):
        docs.create("things", f"t{n:02d}", {"colour": ["red", "green", "blue"][n % 3],
                                           "size": n % 5})
    with counting() as stats:
        found = docs.find("things", "colour", ["red", "blue", "mauve"])
    assert sorted(d.id for d in found) == sorted(f"t{n:02d}" for n in range(30) if n % 3 != 1)
    assert stats.queries == 1 and stats.read == 20
    by_size = docs.find("things", "size", [0, 4])
    assert sorted(d.id for d in by_size) == sorted(f"t{n:02d}" for n in range(30) if n % 5 in (0, 4))
    assert all(d.version == docs.get("things", d.id).version for d in by_size)
    assert docs.find("things", "size", []) == []


def test_find_sees_replacements_and_deletions(documents):
    docs = _ready(documents)
    a = docs.create("things", "a", {"colour": "red"})
    docs.create("things", "b", {"colour": "red"})
    docs.create("things", "c", {"other": 1})  # no indexed field: never found
    docs.replace("things", "a", {"colour": "green"}, a.version)
    docs.delete("things", "b")
    assert [d.id for d in docs.find("things", "colour", ["red"])] == []
    assert [d.body for d in docs.find("things", "colour", ["green"])] == [{"colour": "green"}]


def test_find_only_on_declared_fields(documents):
    docs = _ready(documents)
    with pytest.raises(ValueError, match="not an indexed field"):
        docs.find("things", "nested", ["x"])
    with pytest.raises(ValueError):
        docs.find("things", "colour", [True])


def test_collections_are_separate(documents):
    docs = _ready(documents)
    docs.create("things", "same", {"colour": "red"})
    docs.create("others", "same", {"colour": "red"})
    assert docs.count("things") == 1 and docs.count("others") == 1
    assert [d.id for d in docs.find("others", "colour", ["red"])] == ["same"]
    docs.delete("others", "same")
    assert docs.get("things", "same") is not None


def test_pages_in_id_order(documents):
    docs = _ready(documents)
    ids = [f"k{n:04d}" for n in range(0, 2500, 7)] + ["A", "Z", "a", "z", "user:x", "0"]
    for doc_id in reversed(ids):
        docs.create("things", doc_id, {})
    seen, after = [], None
    while batch := docs.page("things", after, 50):
        assert len(batch) <= 50
        seen += [d.id for d in batch]
        after = batch[-1].id
    assert seen == sorted(ids)
    assert [d.id for d in docs.all("things")] == sorted(ids)
    assert len(docs.page("things", None, 10 * MAX_PAGE)) == min(len(ids), MAX_PAGE)
    assert docs.count("things") == len(ids)


def test_expired_documents_are_removed(documents):
    docs = _ready(documents)
    now = time.time()
    docs.create("things", "old", {"n": 1}, expires=now - 10)
    later = docs.create("things", "later", {"n": 2}, expires=now + 3600)
    docs.create("things", "forever", {"n": 3})
    assert docs.get("things", "later").expires == pytest.approx(now + 3600)
    assert docs.get("things", "forever").expires is None
    docs.replace("things", "later", {"n": 2}, later.version, expires=now - 1)
    assert docs.expire("things", now) == 2
    assert [d.id for d in docs.all("things")] == ["forever"]
    assert docs.expire("things", now) == 0


def test_bad_input_is_refused(documents):
    docs = _ready(documents)
    for bad in ["", "../x", "a b", "é", "_design", "x" * 201, None]:
        with pytest.raises(ValueError):
            docs.create("things", bad, {})
    with pytest.raises(ValueError):
        docs.create("things", "ok", {"n": float("nan")})
    with pytest.raises(ValueError):
        docs.create("things", "ok", ["not", "a", "dict"])
    with pytest.raises(ValueError, match="not declared"):
        docs.get("undeclared", "x")
    with pytest.raises(ValueError):
        docs.declare("Bad-Name")
    assert docs.count("things") == 0


def test_another_process_sees_the_same_documents(documents, documents_twin):
    docs, twin = _ready(documents), _ready(documents_twin)
    made = docs.create("things", "shared", {"colour": "red"})
    assert twin.get("things", "shared") == made
    twin.replace("things", "shared", {"colour": "blue"}, made.version)
    with pytest.raises(VersionConflict):
        docs.replace("things", "shared", {"colour": "green"}, made.version)
    assert [d.id for d in docs.find("things", "colour", ["blue"])] == ["shared"]


def test_counting_is_per_thread(documents):
    docs = _ready(documents)
    docs.create("things", "a", {"colour": "red"})
    other: list = []

    def elsewhere():
        with counting() as stats:
            docs.find("things", "colour", ["red"])
            docs.get("things", "a")
        other.append(stats)

    with counting() as mine:
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        docs.find("things", "colour", ["red"])
    assert (mine.queries, mine.read) == (1, 1)
    assert (other[0].queries, other[0].read) == (2, 2)


__all__ = ["COLLECTIONS"] + [name for name in list(globals()) if name.startswith("test_")]
