"""The files contract (fileserver.testing.store_contract) on every backend, the
in-memory test backend included, against the real test servers."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from conftest import BACKENDS, CONTRACT_BACKENDS
from fileserver.testing.store_contract import *  # noqa: F401,F403


@pytest.fixture(params=sorted(CONTRACT_BACKENDS))
def backend(request):
    return CONTRACT_BACKENDS[request.param](request)


def test_every_installed_backend_is_in_the_suite():
    installed = {ep.name for ep in entry_points(group="fileserver.backends")}
    assert installed <= set(BACKENDS), f"add fixtures for {installed - set(BACKENDS)}"
