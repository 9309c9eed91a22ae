"""The documents contract (fileserver.testing.documents_contract) on every
backend, the in-memory test backend included, against the real test servers."""

from __future__ import annotations

import pytest

from conftest import CONTRACT_BACKENDS
from fileserver.testing.documents_contract import *  # noqa: F401,F403
from fileserver.testing.documents_contract import COLLECTIONS


@pytest.fixture(params=sorted(CONTRACT_BACKENDS))
def backend(request):
    return CONTRACT_BACKENDS[request.param](request)


@pytest.fixture
def pair(backend, tmp_path):
    """A store's documents and the same documents opened alone, as
    `fileserver user` beside a serving process opens them."""
    settings, options = backend.settings(tmp_path / "d", collections=COLLECTIONS)
    store = backend.cls.from_config(settings, options)
    twin = backend.cls.open_documents(settings, options)
    yield store.documents(), twin
    twin.close()
    store.close()


@pytest.fixture
def documents(pair):
    return pair[0]


@pytest.fixture
def documents_twin(pair):
    return pair[1]


def test_embedded_find_uses_the_index(tmp_path):
    from fileserver_embedded.documents import SQLiteDocuments

    docs = SQLiteDocuments(tmp_path / "d.sqlite3")
    docs.declare("things", indexed=["colour"])
    plan = docs.query_plan("things", "colour")
    assert "USING INDEX c_things_colour" in plan, plan


def test_declaring_again_costs_nothing_unless_a_field_is_new():
    from memory_backend import MemoryDocuments

    declared = []

    class Counting(MemoryDocuments):
        def _declare(self, spec):
            declared.append(spec)
            super()._declare(spec)

    docs = Counting("declare-twice")
    docs.declare("things", ["colour"])
    docs.declare("things", ["colour"])
    docs.declare("things")
    assert [s.indexed for s in declared] == [("colour",)]
    docs.declare("things", ["size"])
    assert [s.indexed for s in declared] == [("colour",), ("colour", "size")]
