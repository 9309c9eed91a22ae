"""The CouchDB store's documents: documents in the files' database, views in its design document.

A document of collection ``c`` with id ``i`` is the CouchDB document
``"d:" + c + ":" + hex(i)``::

    {"_id": "d:tiles:3a...", "_rev": "...", "c": "tiles", "b": {...body...}, "x": 1.7e9}

(``x``, the expiry in unix seconds, only where one was given). ``d:`` sorts
outside the ``f:`` (files) and ``s:`` (staging) ranges, and
``validate_doc_update`` checks ``f:`` documents only. Hex ids keep
``_all_docs`` in id order under every collation. The version is ``_rev``:
a create is a save without ``_rev`` (409 for the second creator), a replace
a save with the ``_rev`` read (409 if it changed).

Views, in ``_design/fileserver`` (written by ``fileserver init-db`` as server
admin, since members may not write design documents): ``d_<c>_<field>`` per
declared field, keyed by the field's value, so ``find`` is ONE
``POST .../_view/d_<c>_<field> {"keys": [...]}`` with ``include_docs``;
``d_count`` (``_count`` reduce keyed by collection) for ``count``, and
``d_expires`` keyed by ``[collection, expiry]`` for ``expire``. A server
whose design document lacks a view keeps serving; ``declare`` logs what to
run, and a ``find`` on the missing view says it (503).

Upgrading from the first layout: ``r:<key>`` documents (accounts) and
``t:<id>`` documents (the mosaic's tiles) are copied, create-only, into the
collections ``accounts`` and ``tiles`` when those are first declared, and
then deleted.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

import couchdb.http as couch_http

from fileserver.documents import (CollectionSpec, Doc, DocumentExists, Documents,
                                  VersionConflict)
from fileserver.errors import BackendUnavailable, NotSetUp

if TYPE_CHECKING:
    from .files import CouchDBStore

log = logging.getLogger(__name__)

DESIGN_NAME = "fileserver"
COUNT_VIEW = "d_count"
EXPIRES_VIEW = "d_expires"
STATIC_VIEWS = {
    COUNT_VIEW: {"map": "function (doc) {\n  if (doc._id.indexOf('d:') === 0) "
                        "{ emit(doc.c, null); }\n}", "reduce": "_count"},
    EXPIRES_VIEW: {"map": "function (doc) {\n  if (doc._id.indexOf('d:') === 0 && "
                          "typeof doc.x === 'number') { emit([doc.c, doc.x], doc._rev); }\n}"},
}
#: collection -> (old id prefix, old document -> body)
LEGACY = {
    "accounts": ("r:", lambda doc: {k: v for k, v in doc.items() if not k.startswith("_")}),
    "tiles": ("t:", lambda doc: {"bucket": doc.get("bucket"), "lab": doc.get("lab"),
                                 "grid": doc.get("grid"), "meta": doc.get("meta") or {}}),
}


def field_view(collection: str, field_name: str) -> tuple[str, dict]:
    """The view ``find`` uses for one declared field: name and definition."""
    return f"d_{collection}_{field_name}", {"map": (
        "function (doc) {\n"
        f"  if (doc._id.indexOf('d:') === 0 && doc.c === '{collection}') {{\n"
        f"    var v = doc.b['{field_name}'];\n"
        "    if (typeof v === 'string' || typeof v === 'number') { emit(v, null); }\n"
        "  }\n}")}


def views_for(specs) -> dict[str, dict]:
    """Every view the documents need, for these declared collections."""
    views = dict(STATIC_VIEWS)
    for spec in specs:
        views.update(field_view(spec.name, f) for f in spec.indexed)
    return views


def couch_id(collection: str, doc_id: str) -> str:
    return f"d:{collection}:{doc_id.encode('ascii').hex()}"


def _doc(row_doc: dict) -> Doc:
    doc_id = bytes.fromhex(row_doc["_id"].rsplit(":", 1)[1]).decode("ascii")
    return Doc(doc_id, row_doc["_rev"], dict(row_doc.get("b") or {}), row_doc.get("x"))


class CouchDocuments(Documents):
    """Shares the store's couchdb-python session (its pool is locked) and error boundary."""

    def __init__(self, store: "CouchDBStore", *, owns_store: bool = False):
        super().__init__()
        self._store, self._owns = store, owns_store
        self._db = store._db
        self.location = store.location
        self._views: dict[str, dict] | None = None
        self._warned: set[str] = set()

    def _installed_views(self) -> dict[str, dict]:
        if self._views is None:
            with self._store._boundary():
                design = self._db.get(f"_design/{DESIGN_NAME}") or {}
            self._views = design.get("views") or {}
        return self._views

    def _declare(self, spec):
        needed = views_for([spec])
        missing = [name for name, view in needed.items() if self._installed_views().get(name)
                   != view and name not in self._warned]
        self._warned.update(missing)  # each missing view is said once per process
        if missing:
            log.warning("couchdb: the design document _design/%s of %r at %s lacks the views %s "
                        "(collection %r); run `fileserver init-db --backend couchdb --admin-url "
                        "http://ADMIN:PASSWORD@HOST:PORT/`", DESIGN_NAME, self._store.database,
                        self._store.url, ", ".join(missing), spec.name)
        if spec.name in LEGACY:
            self._upgrade(spec, *LEGACY[spec.name])

    def _view(self, name: str, **options):
        """Rows of one of our views, fetched here (so errors surface inside the boundary)."""
        try:
            rows = self._db.view(f"{DESIGN_NAME}/{name}", **options).rows
        except couch_http.ResourceNotFound as exc:
            from .files import _reason

            reason = _reason(exc)
            if reason not in ("missing", "deleted", "missing_named_view") \
                    and "view" not in reason.lower():
                raise  # no database: the boundary says so
            raise NotSetUp(
                f"The CouchDB database {self._store.database!r} at {self._store.url} has no view "
                f"_design/{DESIGN_NAME}/_view/{name} ({reason}); run `fileserver init-db "
                "--backend couchdb --admin-url http://ADMIN:PASSWORD@HOST:PORT/` to "
                "install it.") from None
        return rows

    def _read(self, cid: str) -> dict | None:
        try:
            return self._db[cid]
        except couch_http.ResourceNotFound as exc:
            from .files import _reason

            if _reason(exc) in ("missing", "deleted"):
                return None
            raise

    def _get(self, spec, doc_id):
        with self._store._boundary():
            found = self._read(couch_id(spec.name, doc_id))
        return _doc(found) if found is not None else None

    def _new(self, spec, doc_id, body, expires) -> dict:
        new = {"_id": couch_id(spec.name, doc_id), "c": spec.name, "b": body}
        if expires is not None:
            new["x"] = float(expires)
        return new

    def _create(self, spec, doc_id, body, expires):
        new = self._new(spec, doc_id, body, expires)
        with self._store._boundary():
            try:
                _, rev = self._db.save(new)  # no _rev: creates, or 409
            except couch_http.ResourceConflict:
                raise DocumentExists(f"{spec.name}/{doc_id} exists already.") from None
        return Doc(doc_id, rev, body, expires)

    def _replace(self, spec, doc_id, body, version, expires):
        new = {**self._new(spec, doc_id, body, expires), "_rev": version}
        with self._store._boundary():
            try:
                _, rev = self._db.save(new)
            except (couch_http.ResourceConflict, couch_http.ResourceNotFound):
                raise VersionConflict(f"{spec.name}/{doc_id} changed since version "
                                      f"{version}.") from None
        return Doc(doc_id, rev, body, expires)

    def _delete(self, spec, doc_id, version):
        cid = couch_id(spec.name, doc_id)
        for attempt in range(50):
            with self._store._boundary():
                current = self._read(cid)
                if current is None:
                    return False
                if version is not None and current["_rev"] != version:
                    raise VersionConflict(f"{spec.name}/{doc_id} changed since version {version}.")
                try:
                    self._db.delete(current)
                    return True
                except couch_http.ResourceConflict:
                    if version is not None:
                        raise VersionConflict(f"{spec.name}/{doc_id} changed since version "
                                              f"{version}.") from None
                except couch_http.ResourceNotFound:
                    return False
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise BackendUnavailable(f"{spec.name}/{doc_id} kept changing while being deleted; "
                                 "try again.")

    def _find(self, spec, field_name, values):
        name, _ = field_view(spec.name, field_name)
        with self._store._boundary():
            rows = self._view(name, keys=values, include_docs=True, reduce=False)
        return [_doc(row.doc) for row in rows if row.doc is not None]

    def _page(self, spec, after, limit):
        low = couch_id(spec.name, after) if after is not None else f"d:{spec.name}:"
        high = f"d:{spec.name}:g"  # above every hex id
        with self._store._boundary():
            rows = self._db.view("_all_docs", startkey=low, endkey=high, inclusive_end=False,
                                 include_docs=True, limit=limit + 1).rows
        docs = [_doc(row.doc) for row in rows if row.doc is not None]
        return [d for d in docs if after is None or d.id != after][:limit]

    def _count(self, spec):
        with self._store._boundary():
            rows = self._view(COUNT_VIEW, key=spec.name, reduce=True)
        return int(rows[0].value) if rows else 0

    def _expire(self, spec, now):
        removed = 0
        while True:
            with self._store._boundary():
                rows = self._view(EXPIRES_VIEW, startkey=[spec.name], endkey=[spec.name, now],
                                  limit=1000)
                if not rows:
                    return removed
                results = self._db.update([{"_id": row.id, "_rev": row.value, "_deleted": True}
                                           for row in rows])
            gone = sum(1 for ok, _, _ in results if ok)
            removed += gone
            if gone == 0:
                return removed  # each changed meanwhile: the next call sees their new expiry

    def _upgrade(self, spec: CollectionSpec, prefix: str, to_body) -> None:
        """Copy documents of the first layout into this collection, then delete them."""
        low = prefix
        while True:
            with self._store._boundary():
                rows = self._db.view("_all_docs", startkey=low, endkey=prefix + "\ufff0",
                                     include_docs=True, limit=500).rows
            rows = [row for row in rows if row.id != low or low == prefix]
            if not rows:
                return
            copied = []
            for row in rows:
                try:
                    self._create(spec, row.id[len(prefix):], to_body(row.doc), None)
                except DocumentExists:
                    pass  # copied by an earlier, interrupted upgrade
                except ValueError as exc:  # left in place, and said
                    log.warning("couchdb: could not upgrade %s: %s", row.id, exc)
                    continue
                copied.append({"_id": row.id, "_rev": row.doc["_rev"], "_deleted": True})
            if copied:
                with self._store._boundary():
                    self._db.update(copied)
                log.info("couchdb: upgraded %d %s documents into the collection %s",
                         len(copied), prefix, spec.name)
            low = rows[-1].id

    def close(self):
        if self._owns:
            self._store.close()
