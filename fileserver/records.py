"""A small table of JSON documents kept beside the files, in the active backend.

Accounts (users, API tokens, the session key) live here, so every server
process on one database shares them. Each backend offers it as
``store.capability("records")`` and, for commands that run beside a serving
process (``fileserver user ...``), as ``StoreClass.open_records(settings,
options)``. Keys are short ASCII strings such as ``user:alice``.
"""

from __future__ import annotations

import abc
import re
from typing import Any

from .errors import StoreError

KEY = re.compile(r"[A-Za-z0-9:._-]{1,200}")


class RecordExists(StoreError):
    """``put(..., create=True)`` found the key taken."""

    status = 409


def check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise ValueError(f"bad record key {key!r}")
    return key


class Records(abc.ABC):
    """get/put/delete/list of JSON-able dicts by key; errors are StoreErrors
    (``BackendUnavailable`` when the database is away)."""

    @abc.abstractmethod
    def get(self, key: str) -> dict[str, Any] | None:
        """The document, or None."""

    @abc.abstractmethod
    def put(self, key: str, doc: dict[str, Any], *, create: bool = False) -> None:
        """Store ``doc`` under ``key``; with ``create``, raise ``RecordExists``
        if the key is taken (atomic: of two creators, one wins)."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the key; False if it was not there."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        """Every (key, doc) whose key starts with ``prefix``, in key order."""

    def close(self) -> None:
        """Release what ``open_records`` opened (nothing for a store's own)."""
