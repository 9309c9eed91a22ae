"""An in-memory backend, for tests only: both contracts in one small module.

It proves what a fourth backend costs (a ``Store`` and a ``Documents``, each
a handful of primitives) and runs the contract suites and the mosaic
in-process. State lives in a module-level dict keyed by the ``name`` option,
so ``open_documents`` with the same options sees what the store wrote, as
another process on one database would.
"""

from __future__ import annotations

import io
import itertools
import threading
from typing import Any

from fileserver.documents import Doc, DocumentExists, Documents, VersionConflict
from fileserver.errors import FileNotFound
from fileserver.options import Option, text
from fileserver.store import NAME_MAX, FileInfo, Store, StoredFile, utcnow

_SPACES: dict[str, dict[str, Any]] = {}
_SPACES_LOCK = threading.Lock()


def _space(name: str) -> dict[str, Any]:
    with _SPACES_LOCK:
        return _SPACES.setdefault(name, {"files": {}, "collections": {}, "lock": threading.RLock(),
                                         "versions": itertools.count(1)})


class MemoryDocuments(Documents):
    def __init__(self, name: str):
        super().__init__()
        self._space = _space(name)
        self._lock = self._space["lock"]
        self.location = f"memory:{name}"

    def _coll(self, spec) -> dict[str, tuple[str, dict, float | None]]:
        return self._space["collections"].setdefault(spec.name, {})

    def _doc(self, doc_id: str, entry) -> Doc:
        return Doc(doc_id, entry[0], dict(entry[1]), entry[2])

    def _declare(self, spec):
        with self._lock:
            self._coll(spec)

    def _get(self, spec, doc_id):
        with self._lock:
            entry = self._coll(spec).get(doc_id)
            return self._doc(doc_id, entry) if entry else None

    def _create(self, spec, doc_id, body, expires):
        with self._lock:
            if doc_id in self._coll(spec):
                raise DocumentExists(f"{spec.name}/{doc_id} exists already.")
            self._coll(spec)[doc_id] = (str(next(self._space["versions"])), dict(body), expires)
            return self._doc(doc_id, self._coll(spec)[doc_id])

    def _replace(self, spec, doc_id, body, version, expires):
        with self._lock:
            entry = self._coll(spec).get(doc_id)
            if entry is None or entry[0] != version:
                raise VersionConflict(f"{spec.name}/{doc_id} changed since version {version}.")
            self._coll(spec)[doc_id] = (str(next(self._space["versions"])), dict(body), expires)
            return self._doc(doc_id, self._coll(spec)[doc_id])

    def _delete(self, spec, doc_id, version):
        with self._lock:
            entry = self._coll(spec).get(doc_id)
            if entry is None:
                return False
            if version is not None and entry[0] != version:
                raise VersionConflict(f"{spec.name}/{doc_id} changed since version {version}.")
            del self._coll(spec)[doc_id]
            return True

    def _find(self, spec, field_name, values):
        wanted = set(values)
        with self._lock:  # no index: a test double may scan
            return [self._doc(k, e) for k, e in self._coll(spec).items()
                    if e[1].get(field_name) in wanted]

    def _page(self, spec, after, limit):
        with self._lock:
            ids = sorted(k for k in self._coll(spec) if after is None or k > after)[:limit]
            return [self._doc(k, self._coll(spec)[k]) for k in ids]

    def _count(self, spec):
        with self._lock:
            return len(self._coll(spec))

    def _expire(self, spec, now):
        with self._lock:
            gone = [k for k, e in self._coll(spec).items() if e[2] is not None and e[2] <= now]
            for k in gone:
                del self._coll(spec)[k]
            return len(gone)


class MemoryStore(Store):
    location = "memory"
    NAME = "memory"
    OPTIONS = {"name": Option(text, "default", "which in-memory space to use")}

    @classmethod
    def _from_config(cls, settings, options):
        return cls(options["name"], max_size=settings.max_upload_size)

    @classmethod
    def _open_documents(cls, settings, options):
        return MemoryDocuments(options["name"])

    def __init__(self, name: str, *, max_size: int | None = None):
        super().__init__(max_size=max_size)
        self._space = _space(name)
        self._files: dict[str, tuple[FileInfo, bytes]] = self._space["files"]
        self._lock = self._space["lock"]
        self._documents = MemoryDocuments(name)

    def documents(self):
        return self._documents

    def _put(self, name, upload):
        data = b"".join(upload.chunks())
        now = utcnow()
        with self._lock:
            old = self._files.get(name)
            info = upload.to_info(name, created=old[0].created if old else now, modified=now)
            self._files[name] = (info, data)
        return info, old is None

    def _entry(self, name):
        with self._lock:
            if name not in self._files:
                raise FileNotFound(f"No file named {name!r}.")
            return self._files[name]

    def _open(self, name, start, end):
        info, data = self._entry(name)
        raw = io.BytesIO(data)
        raw.seek(start)
        return StoredFile(info, raw, start=start, end=end)

    def _info(self, name):
        return self._entry(name)[0]

    def _delete(self, name):
        with self._lock:
            if self._files.pop(name, None) is None:
                raise FileNotFound(f"No file named {name!r}.")

    def _list(self, prefix, after, limit):
        low = after if after is not None else prefix
        with self._lock:
            names = sorted(n for n in self._files
                           if n.startswith(prefix) and n < prefix + NAME_MAX
                           and (n > low if after is not None else n >= low))[:limit]
            return [self._files[n][0] for n in names]
