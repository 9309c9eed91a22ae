"""The documents contract: named collections of JSON documents, beside the files.

Every backend implements it natively next to its ``Store`` (SQLite tables
with real indexes, CouchDB documents with one view per indexed field,
MongoDB collections with indexes), so features (accounts, the mosaic's tile
index, jobs, login throttling) are written once, against this class, and
every server process on one database sees the same state.

The public methods validate and count, once, here; backends implement the
``_`` primitives (the shape of ``Store``). A collection is declared before
use, with the body fields it can be searched by (``find``): that is what
lets each backend build a real index for them.

Bad ids, bodies and values are ``BadRequest`` (a ``ValueError``); a body
over ``MAX_BODY`` is ``TooLarge``; using an undeclared collection or field
is a programming error (``ValueError``). Concurrency is explicit: ``create`` is create-only (of two creators one
wins, the other gets ``DocumentExists``), ``replace`` and ``delete`` take the
version that was read (the other writer gets ``VersionConflict``, never a
silent overwrite). Versions are opaque strings.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .errors import BackendUnavailable, BadRequest, Conflict, TooLarge

#: Ids are short ASCII, so "id order" is one order on every backend.
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@%+=-]{0,199}")
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_BODY = 1 << 20
MAX_PAGE = 1000
#: Values of one ``find`` call; backends split bigger batches themselves.
MAX_FIND = 10_000


class DocumentExists(Conflict):
    """``create`` found the id taken."""


class VersionConflict(Conflict):
    """The document changed (or went away) since the version given was read."""


@dataclass(frozen=True)
class Doc:
    """One stored document: its id, opaque version and JSON body."""

    id: str
    version: str
    body: dict[str, Any]
    #: unix seconds after which ``expire`` removes it, if it was given one
    expires: float | None = None


@dataclass(frozen=True)
class CollectionSpec:
    """A collection as a feature declares it: its name and indexed body fields."""

    name: str
    indexed: tuple[str, ...] = ()


@dataclass
class QueryStats:
    """What the calls made inside ``counting()`` cost: requests and documents read."""

    queries: int = 0
    read: int = 0
    calls: dict[str, int] = field(default_factory=dict)


_counters: contextvars.ContextVar[tuple[QueryStats, ...]] = contextvars.ContextVar(
    "fileserver_documents_stats", default=())


@contextlib.contextmanager
def counting() -> Iterator[QueryStats]:
    """Count the documents calls this thread makes inside the block (nested
    blocks each see their own and their inner blocks' calls)."""
    stats = QueryStats()
    token = _counters.set(_counters.get() + (stats,))
    try:
        yield stats
    finally:
        _counters.reset(token)


def _count(call: str, read: int) -> None:
    for stats in _counters.get():
        stats.queries += 1
        stats.read += read
        stats.calls[call] = stats.calls.get(call, 0) + 1


def check_id(doc_id: str) -> str:
    if not isinstance(doc_id, str) or not ID.fullmatch(doc_id):
        raise BadRequest(f"Bad document id {doc_id!r}: 1-200 of A-Z a-z 0-9 . _ : @ % + = -, "
                         "starting with a letter or digit.")
    return doc_id


def _check_value(value: Any) -> Any:
    """An indexed value: a string or a finite number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)):
        raise BadRequest(f"Indexed values are strings or finite numbers, not {value!r}.")
    return value


def _check_body(body: dict[str, Any], spec: CollectionSpec) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("A document body is a JSON object (dict).")
    try:
        size = len(json.dumps(body, allow_nan=False, separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"A document body must be plain JSON: {exc}.") from None
    if size > MAX_BODY:
        raise TooLarge(f"A document body is at most {MAX_BODY} bytes of JSON, not {size}.")
    for name in spec.indexed:
        if body.get(name) is not None:
            _check_value(body[name])
    return body


class Documents(abc.ABC):
    """Named collections of JSON documents. Implementations must be thread-safe.

    ``expires`` (unix seconds) on ``create``/``replace`` marks a document
    that ``expire`` removes once that time has passed; until then it is an
    ordinary document (readers decide what a stale one means).
    """

    #: Where the documents live, for people (no passwords); set by backends.
    location: str = ""

    def __init__(self) -> None:
        self._specs: dict[str, CollectionSpec] = {}

    # -- declaring ---------------------------------------------------------------

    def declare(self, name: str, indexed: Iterable[str] = ()) -> CollectionSpec:
        """Make a collection (and its indexes) ready; safe to repeat, and a
        repeat with no new field costs nothing (the core and a feature may
        both declare what the feature uses). Declaring one name twice with
        other fields adds the new ones."""
        if not NAME.fullmatch(name or ""):
            raise ValueError(f"bad collection name {name!r}: a-z, 0-9 and _, up to 40")
        fields = tuple(dict.fromkeys([*self._specs.get(name, CollectionSpec(name)).indexed,
                                      *indexed]))
        for each in fields:
            if not NAME.fullmatch(each):
                raise ValueError(f"bad indexed field {each!r} in {name}: a-z, 0-9 and _")
        spec = CollectionSpec(name, fields)
        if self._specs.get(name) != spec:
            self._declare(spec)
            self._specs[name] = spec
        return spec

    def _spec(self, name: str) -> CollectionSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ValueError(f"collection {name!r} was not declared") from None

    @property
    def collections(self) -> list[CollectionSpec]:
        return list(self._specs.values())

    # -- public API: checks first, then the backend primitive ---------------------

    def get(self, collection: str, doc_id: str) -> Doc | None:
        found = self._get(self._spec(collection), check_id(doc_id))
        _count("get", found is not None)
        return found

    def create(self, collection: str, doc_id: str, body: dict[str, Any], *,
               expires: float | None = None) -> Doc:
        """Store a new document; ``DocumentExists`` if the id is taken."""
        spec = self._spec(collection)
        doc = self._create(spec, check_id(doc_id), _check_body(body, spec), expires)
        _count("create", 0)
        return doc

    def replace(self, collection: str, doc_id: str, body: dict[str, Any], version: str, *,
                expires: float | None = None) -> Doc:
        """Replace the document read as ``version``; ``VersionConflict`` if it
        changed or went away meanwhile."""
        spec = self._spec(collection)
        doc = self._replace(spec, check_id(doc_id), _check_body(body, spec), str(version),
                            expires)
        _count("replace", 0)
        return doc

    def delete(self, collection: str, doc_id: str, version: str | None = None) -> bool:
        """Remove a document; False if it was not there. With ``version``,
        ``VersionConflict`` if it changed since."""
        done = self._delete(self._spec(collection), check_id(doc_id),
                            None if version is None else str(version))
        _count("delete", 0)
        return done

    def find(self, collection: str, field_name: str, values: Iterable[Any]) -> list[Doc]:
        """Every document whose indexed ``field_name`` equals one of ``values``:
        the whole batch in one native indexed query (split only past
        ``MAX_FIND`` values). Order is unspecified."""
        spec = self._spec(collection)
        if field_name not in spec.indexed:
            raise ValueError(f"{collection}.{field_name} is not an indexed field "
                             f"(declared: {', '.join(spec.indexed) or 'none'})")
        wanted = list(dict.fromkeys(_check_value(v) for v in values))
        found: list[Doc] = []
        for start in range(0, len(wanted), MAX_FIND):
            batch = self._find(spec, field_name, wanted[start:start + MAX_FIND])
            _count("find", len(batch))
            found += batch
        return found

    def page(self, collection: str, after: str | None = None, limit: int = 100) -> list[Doc]:
        """Up to ``limit`` (at most ``MAX_PAGE``) documents with ids > ``after``, in id order."""
        limit = max(1, min(int(limit), MAX_PAGE))
        docs = self._page(self._spec(collection), None if after is None else check_id(after),
                          limit)
        _count("page", len(docs))
        return docs

    def all(self, collection: str) -> Iterator[Doc]:
        """Every document, page by page."""
        after = None
        while docs := self.page(collection, after, MAX_PAGE):
            yield from docs
            after = docs[-1].id

    def count(self, collection: str) -> int:
        total = self._count(self._spec(collection))
        _count("count", 0)
        return total

    def expire(self, collection: str, now: float | None = None) -> int:
        """Remove the documents whose ``expires`` has passed; returns how many."""
        removed = self._expire(self._spec(collection), time.time() if now is None else now)
        _count("expire", 0)
        return removed

    def close(self) -> None:
        """Release what was opened for these documents alone (nothing when they
        share the store's connection)."""

    # -- backend primitives -----------------------------------------------------------

    @abc.abstractmethod
    def _declare(self, spec: CollectionSpec) -> None:
        """Create the collection and one index per ``spec.indexed`` field, if
        missing. Where that needs rights the server's user lacks (a CouchDB
        design document), check instead, and say what to run, without failing."""

    @abc.abstractmethod
    def _get(self, spec: CollectionSpec, doc_id: str) -> Doc | None:
        """The document or None."""

    @abc.abstractmethod
    def _create(self, spec: CollectionSpec, doc_id: str, body: dict, expires: float | None) -> Doc:
        """Insert atomically; raise ``DocumentExists`` if the id is taken."""

    @abc.abstractmethod
    def _replace(self, spec: CollectionSpec, doc_id: str, body: dict, version: str,
                 expires: float | None) -> Doc:
        """Replace only if the stored version is ``version`` (one atomic
        compare-and-set), else raise ``VersionConflict``."""

    @abc.abstractmethod
    def _delete(self, spec: CollectionSpec, doc_id: str, version: str | None) -> bool:
        """Remove (only at ``version`` when given, else ``VersionConflict``);
        False if absent."""

    @abc.abstractmethod
    def _find(self, spec: CollectionSpec, field_name: str, values: list) -> list[Doc]:
        """Documents whose ``field_name`` is one of ``values``: ONE indexed query."""

    @abc.abstractmethod
    def _page(self, spec: CollectionSpec, after: str | None, limit: int) -> list[Doc]:
        """Up to ``limit`` documents with ids > ``after``, in id order."""

    @abc.abstractmethod
    def _count(self, spec: CollectionSpec) -> int:
        """How many documents the collection holds."""

    @abc.abstractmethod
    def _expire(self, spec: CollectionSpec, now: float) -> int:
        """Remove documents whose expiry is <= ``now``; return how many."""


def retry_update(documents: Documents, collection: str, doc_id: str, change,
                 *, expires=None, attempts: int = 20) -> Doc | None:
    """Read, apply ``change(body or None) -> body or None``, write with the
    version read; again on a conflict. ``None`` from ``change`` leaves the
    document as it is. Returns the document written (or None)."""
    for _ in range(attempts):
        current = documents.get(collection, doc_id)
        body = change(dict(current.body) if current else None)
        if body is None:
            return None
        try:
            if current is None:
                return documents.create(collection, doc_id, body, expires=expires)
            return documents.replace(collection, doc_id, body, current.version, expires=expires)
        except Conflict:
            continue
    raise BackendUnavailable(f"{collection}/{doc_id} kept changing while it was written; "
                             "try again.")
