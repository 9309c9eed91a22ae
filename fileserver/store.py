"""The storage contract: one abstract ``Store`` every backend implements.

The public methods (``put``, ``open``, ``info``, ``exists``, ``delete``,
``list``) validate names, hash and size-check uploads while they stream, and
guess content types, once, here. Backends implement the small ``_put``,
``_open``, ``_info``, ``_delete`` and ``_list`` primitives and cannot skip
those checks (the template-method shape of Django's storage API).
"""

from __future__ import annotations

import abc
import codecs
import hashlib
import mimetypes
import queue
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Iterator, Mapping

from .errors import FileNotFound, IncompleteUpload, InvalidName, TooLarge

if TYPE_CHECKING:
    from .documents import Documents
    from .options import Option

MAX_NAME_BYTES = 1024
MAX_PAGE = 1000
CHUNK = 1 << 20

# Above every character a valid name may hold: ``prefix + NAME_MAX`` is an
# upper bound for all names starting with ``prefix``.
NAME_MAX = "\U0010ffff"

# Files the server's features keep for themselves (the mosaic's tile images):
# in the store like any file, so every backend and ``migrate`` carry them, but
# never listed, read or changed through /files, so a client cannot make a
# feature's records and its files disagree.
PRIVATE_PREFIX = ".fileserver/"

# Built-in table only, so a guess does not depend on the host's mime.types.
_MIME = mimetypes.MimeTypes()
for _type, _ext in [("image/webp", ".webp"), ("image/avif", ".avif"),
                    ("image/heic", ".heic"), ("text/markdown", ".md"),
                    ("application/wasm", ".wasm"), ("audio/flac", ".flac")]:
    _MIME.add_type(_type, _ext)


def guess_type(name: str) -> str:
    return _MIME.guess_type(name, strict=False)[0] or "application/octet-stream"


# Control characters (Unicode category Cc) and the backslash.
_BAD_ASCII = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def _bad_character(text: str) -> str | None:
    match = _BAD_ASCII.search(text)
    if match:
        return "a backslash (use / to separate folders)" if match[0] == "\\" \
            else "a control character"
    if not text.isascii():  # the slow look only for names that need it
        for ch in text:
            code = ord(ch)
            if 0xD800 <= code <= 0xDFFF:
                return "a lone surrogate"
            if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
                return "a Unicode noncharacter"
    return None


def _check_text(text: str, what: str) -> str:
    if not isinstance(text, str):
        raise InvalidName(f"The {what} must be text.")
    problem = _bad_character(text)
    if problem:
        raise InvalidName(f"The {what} {text!r} contains {problem}.")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    size = len(text.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise InvalidName(f"The {what} is {size} bytes long; the limit is {MAX_NAME_BYTES}.")
    if text.startswith("/"):
        raise InvalidName(f"The {what} {text!r} is absolute; drop the leading '/'.")
    return text


def validate_name(name: str) -> str:
    """Return the canonical (NFC) form of a file name or raise ``InvalidName``.

    Any Unicode is fine except control characters, backslashes, absolute
    paths, and empty, ``.`` or ``..`` segments between the ``/`` separators.
    """
    name = _check_text(name, "file name")
    if not name:
        raise InvalidName("The file name is empty.")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            shown = segment or "an empty segment (// or a trailing /)"
            raise InvalidName(f"The file name {name!r} contains {shown!r}; "
                              "names are relative paths without '.', '..' or empty parts.")
    return name


def validate_prefix(prefix: str) -> str:
    """A listing prefix: a name start, possibly a folder ending in ``/``."""
    prefix = _check_text(prefix or "", "prefix")
    if prefix:
        validate_name(prefix.rstrip("/") or ".")
        if prefix.endswith("//"):
            raise InvalidName(f"The prefix {prefix!r} contains an empty segment.")
    return prefix


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class FileInfo:
    """What every backend keeps about a stored file."""

    name: str
    size: int
    content_type: str
    sha256: str
    created: datetime
    modified: datetime
    owner: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "created": self.created.isoformat(),
            "modified": self.modified.isoformat(),
            "owner": self.owner,
            "meta": dict(self.meta),
        }


@dataclass(frozen=True)
class Listing:
    """One page of a listing, in name order.

    ``folders`` is filled only when a delimiter was asked for; ``next_after``
    is the cursor for the next page (``None`` on the last page).
    """

    files: list[FileInfo]
    folders: list[str]
    next_after: str | None


class _Hasher:
    """sha256 that, once an upload proves large, runs in a helper thread so
    hashing overlaps the backend's writes (hashlib releases the GIL)."""

    INLINE = 1 << 20

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._seen = 0
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def update(self, data: bytes) -> None:
        self._seen += len(data)
        if self._queue is None and self._seen <= self.INLINE:
            self._hash.update(data)
            return
        if self._queue is None:
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
            self._thread.start()
        self._queue.put(data)

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


def _names_no_charset(content_type: str) -> bool:
    """A text type without a charset: UTF-8 content gets ``charset=utf-8``."""
    return content_type.lower().startswith("text/") and "charset=" not in content_type.lower()


class Upload:
    """The body of a ``put`` as a backend reads it.

    Reading hashes (sha256) and counts; it raises ``TooLarge`` past the size
    limit and ``IncompleteUpload`` when the body ends before its announced
    length or the client's stream fails. A backend must store nothing visible
    until it has read to the end (``complete``).

    A text type without a charset is checked for UTF-8 while the body streams
    (so a file is never read twice for it); valid, its type gains
    ``; charset=utf-8`` once complete, so browsers show it right despite
    ``nosniff``. The bytes are stored as they came.
    """

    def __init__(self, source: BinaryIO, *, content_type: str, owner: str | None,
                 meta: dict[str, Any], max_size: int | None, length: int | None):
        self._source = source
        self._hash = _Hasher()
        self.content_type = content_type
        self.owner = owner
        self.meta = meta
        self.max_size = max_size
        self.length = length
        self.size = 0
        self.complete = False
        self.keep_created: datetime | None = None
        self.keep_modified: datetime | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")() \
            if _names_no_charset(content_type) else None

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(self.chunks())
        if self.complete or n == 0:
            return b""
        if self.length is not None:
            n = min(n, self.length - self.size)
        try:
            data = self._source.read(n) if n else b""
        except (OSError, ValueError) as exc:
            raise IncompleteUpload(f"Reading the upload failed after {self.size} bytes "
                                   f"({exc}); nothing was stored.") from exc
        if not data:
            if self.length is not None and self.size < self.length:
                raise IncompleteUpload(f"The upload ended after {self.size} of "
                                       f"{self.length} bytes; nothing was stored.")
            self.complete = True
            self._hash.close()
            self._check_utf8(b"", final=True)
            if self._utf8 is not None:
                self.content_type += "; charset=utf-8"
            return b""
        self.size += len(data)
        if self.max_size is not None and self.size > self.max_size:
            raise TooLarge(too_large_message(self.max_size))
        self._hash.update(data)
        self._check_utf8(data)
        return data

    def _check_utf8(self, data: bytes, final: bool = False) -> None:
        if self._utf8 is not None:
            try:
                self._utf8.decode(data, final)
            except UnicodeDecodeError:
                self._utf8 = None  # not UTF-8: the type stays as it was

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        while chunk := self.read(size):
            yield chunk

    def close(self) -> None:
        """Stop the hashing thread, if any (called by ``Store.put`` in any case)."""
        self._hash.close()

    @property
    def sha256(self) -> str:
        if not self.complete:
            raise RuntimeError("sha256 is known only after the whole upload was read")
        return self._hash.hexdigest()

    def to_info(self, name: str, *, created: datetime, modified: datetime) -> FileInfo:
        """The info to store. Backends pass their own times; times given to
        ``put`` (a migration keeps the originals) take precedence."""
        return FileInfo(name=name, size=self.size, content_type=self.content_type,
                        sha256=self.sha256, created=self.keep_created or created,
                        modified=self.keep_modified or modified,
                        owner=self.owner, meta=dict(self.meta))


def too_large_message(limit: int) -> str:
    return (f"The upload is larger than the limit of {format_size(limit)} "
            f"({limit} bytes, max_upload_size); nothing was stored.")


def format_size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class StoredFile:
    """A readable stored file carrying its ``info``, limited to ``[start, end)``.

    Positions are absolute in the file; reading stops at ``end`` and
    ``seek(0, 2)`` goes there, so a WSGI file wrapper that sends "from here
    to the end" sends exactly the requested range. ``seekable()`` tells the
    truth about the backend's reader.
    """

    def __init__(self, info: FileInfo, raw: BinaryIO, *, start: int = 0, end: int | None = None,
                 seekable: bool | None = None):
        self.info = info
        self._raw = raw
        self.start = start
        self.end = info.size if end is None else min(end, info.size)
        self._pos = start
        self._seekable = raw.seekable() if seekable is None else seekable

    def read(self, n: int = -1) -> bytes:
        left = self.end - self._pos
        if left <= 0:
            return b""
        if n is None or n < 0 or n > left:
            n = left
        data = self._raw.read(n)
        self._pos += len(data)
        return data

    def seekable(self) -> bool:
        return self._seekable

    def readable(self) -> bool:
        return True

    def is_local_file(self) -> bool:
        """True when the content is an OS file here, where seeking costs nothing."""
        try:
            self.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        return True

    def fileno(self) -> int:
        """The OS file's descriptor (positions in it are this file's own):
        the server sends such a file with ``os.sendfile``."""
        return self._raw.fileno()

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if not self._seekable:
            raise OSError("this stored file cannot seek")
        base = {0: 0, 1: self._pos, 2: self.end}[whence]
        target = max(self.start, min(base + offset, self.end))
        self._raw.seek(target)
        self._pos = target
        return target

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return getattr(self._raw, "closed", False)

    def __enter__(self) -> "StoredFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(abc.ABC):
    """The storage contract. Subclasses implement the ``_`` primitives."""

    #: Where the data lives, for people (no passwords); set by backends.
    location: str = ""
    #: The backend's name, for messages (``backend.NAME`` in the config).
    NAME: ClassVar[str] = ""
    #: Its typed options (``[backend.NAME]``, ``FILESERVER_BACKEND_<NAME>_<KEY>``).
    OPTIONS: ClassVar[Mapping[str, "Option"]] = {}

    def __init__(self, *, max_size: int | None = None):
        self.max_size = max_size

    @classmethod
    def typed_options(cls, settings: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` (raw text as configured, or values already typed) parsed
        against ``OPTIONS``, defaults filled in; a ``ConfigError`` names the
        key and where its value came from."""
        from .options import parse_options

        section = f"backend.{cls.NAME or getattr(settings, 'backend', '?')}"
        sources = settings.sources_of(section) if hasattr(settings, "sources_of") else {}
        return parse_options(cls.OPTIONS, options, section, sources)

    # -- set-up: typed options first, then the backend's own ----------------------

    @classmethod
    def from_config(cls, settings: Any, options: Mapping[str, Any]) -> "Store":
        """The store the settings and its ``[backend.NAME]`` options describe, connected."""
        return cls._from_config(settings, cls.typed_options(settings, options))

    @classmethod
    def init_db(cls, settings: Any, options: Mapping[str, Any], *, admin_url: str | None = None,
                collections: Any = ()) -> list[str]:
        """Create what the backend needs (database, indexes, design documents,
        permissions) for the files and for the document ``collections``
        (``CollectionSpec``s) the core and features declare; safe to run twice.
        ``admin_url`` carries credentials allowed to do that where the
        configured ones are not. Returns lines for people saying what was
        done. (``fileserver init-db``)"""
        return cls._init_db(settings, cls.typed_options(settings, options),
                            admin_url=admin_url, collections=list(collections))

    @classmethod
    def open_documents(cls, settings: Any, options: Mapping[str, Any]) -> "Documents":
        """The backend's documents opened alone, for commands that run beside a
        serving process (``fileserver user``); the caller closes them."""
        return cls._open_documents(settings, cls.typed_options(settings, options))

    @classmethod
    def missing(cls, settings: Any, options: Mapping[str, Any]) -> str | None:
        """Why there is no store where the settings point ("no such directory
        /srv/d"), found without creating anything, so a command that only
        reads can refuse instead of making an empty store; ``None`` when the
        store exists or the backend cannot tell."""
        return cls._missing(settings, cls.typed_options(settings, options))

    @classmethod
    def _missing(cls, settings: Any, options: dict[str, Any]) -> str | None:
        """What ``missing`` does for this backend; by default it cannot tell."""
        return None

    @classmethod
    @abc.abstractmethod
    def _from_config(cls, settings: Any, options: dict[str, Any]) -> "Store":
        """Build and connect the store from the settings and its typed options."""

    @classmethod
    def _init_db(cls, settings: Any, options: dict[str, Any], *, admin_url: str | None,
                 collections: list) -> list[str]:
        """What ``init_db`` does for this backend; nothing by default."""
        return []

    @classmethod
    @abc.abstractmethod
    def _open_documents(cls, settings: Any, options: dict[str, Any]) -> "Documents":
        """Open the documents alone (see ``open_documents``)."""

    # -- public API: checks first, then the backend primitive ------------------

    def put(self, name: str, source: BinaryIO, *, content_type: str | None = None,
            owner: str | None = None, meta: dict[str, Any] | None = None,
            length: int | None = None, created: datetime | None = None,
            modified: datetime | None = None) -> tuple[FileInfo, bool]:
        """Store ``source`` under ``name``, streaming. Returns (info, created).

        ``length`` is the announced size if known: too large fails before a
        byte is read, and a shorter body fails as incomplete. ``created`` and
        ``modified`` keep given times instead of now (for migrations).
        """
        name = validate_name(name)
        if self.max_size is not None and length is not None and length > self.max_size:
            raise TooLarge(too_large_message(self.max_size))
        upload = Upload(source, content_type=content_type or guess_type(name), owner=owner,
                        meta=dict(meta or {}), max_size=self.max_size, length=length)
        upload.keep_created, upload.keep_modified = created, modified
        try:
            info, created = self._put(name, upload)
        finally:
            upload.close()
        if not upload.complete:
            raise AssertionError(f"{type(self).__name__}._put stored {name!r} before reading it all")
        return info, created

    def open(self, name: str, start: int = 0, end: int | None = None) -> StoredFile:
        """Open for reading bytes ``[start, end)``; the backend seeks to ``start``."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range {start}-{end}")
        return self._open(validate_name(name), start, end)

    def info(self, name: str) -> FileInfo:
        return self._info(validate_name(name))

    def exists(self, name: str) -> bool:
        try:
            self.info(name)
        except FileNotFound:
            return False
        return True

    def delete(self, name: str) -> None:
        self._delete(validate_name(name))

    def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100,
             delimiter: str | None = None, owner: str | None = None) -> Listing:
        """A page of files whose names start with ``prefix``, after ``after``.

        With ``delimiter="/"``, names with a further ``/`` fold into one
        folder entry each (skipping over their contents, not reading them).
        With ``owner``, only that user's files, unfolded (the delimiter is
        ignored); the pages are filtered here, so this reads the range.
        """
        prefix = validate_prefix(prefix)
        limit = max(1, min(int(limit), MAX_PAGE))
        if after is not None and after < prefix:
            after = None
        if owner is not None:
            return self._list_owned(prefix, after, limit, owner)
        if not delimiter:
            files = self._list(prefix, after, limit + 1)
            more = len(files) > limit
            files = files[:limit]
            return Listing(files, [], files[-1].name if more else None)

        files: list[FileInfo] = []
        folders: list[str] = []
        cursor, more = after, False
        while not more:
            batch = self._list(prefix, cursor, limit + 1)
            for info in batch:
                if len(files) + len(folders) == limit:
                    more = True
                    break
                cut = info.name.find(delimiter, len(prefix))
                if cut < 0:
                    files.append(info)
                    cursor = info.name
                else:
                    folders.append(info.name[:cut + len(delimiter)])
                    cursor = folders[-1] + NAME_MAX  # skip the folder's contents
                    break
            else:
                if len(batch) <= limit:
                    break  # nothing left after this batch
        return Listing(files, folders, cursor if more else None)

    def _list_owned(self, prefix: str, after: str | None, limit: int, owner: str) -> Listing:
        files: list[FileInfo] = []
        cursor = after
        while True:
            batch = self._list(prefix, cursor, MAX_PAGE)
            for info in batch:
                cursor = info.name
                if info.owner == owner:
                    if len(files) == limit:
                        return Listing(files, [], files[-1].name)
                    files.append(info)
            if len(batch) < MAX_PAGE:
                return Listing(files, [], None)

    def close(self) -> None:
        """Release connections and locks."""

    @abc.abstractmethod
    def documents(self) -> "Documents":
        """The backend's documents (``fileserver.documents``, the second
        contract), sharing this store's connection; the same object each call."""

    # -- backend primitives -------------------------------------------------------

    @abc.abstractmethod
    def _put(self, name: str, upload: Upload) -> tuple[FileInfo, bool]:
        """Read ``upload`` to its end, then make it visible under ``name`` atomically.

        A failure while reading must leave any previous file untouched and
        nothing half-written. Returns (info, True if the name was new).
        """

    @abc.abstractmethod
    def _open(self, name: str, start: int, end: int | None) -> StoredFile:
        """Raise ``FileNotFound`` or return a reader positioned at ``start``."""

    @abc.abstractmethod
    def _info(self, name: str) -> FileInfo:
        """Raise ``FileNotFound`` or return the stored metadata."""

    @abc.abstractmethod
    def _delete(self, name: str) -> None:
        """Raise ``FileNotFound`` or remove the file."""

    @abc.abstractmethod
    def _list(self, prefix: str, after: str | None, limit: int) -> list[FileInfo]:
        """Up to ``limit`` files starting with ``prefix``, names > ``after``, in name order."""


def visible_list(store: Store, prefix: str, *, after: str | None = None, limit: int = 100,
                 **options: Any) -> Listing:
    """``store.list`` without the server's private files (PRIVATE_PREFIX):
    a page that reaches them is completed from past their range."""
    listing = store.list(prefix, after=after, limit=limit, **options)
    entries = listing.folders + [i.name for i in listing.files]
    if not any(n.startswith(PRIVATE_PREFIX) for n in entries):
        return listing
    files = [i for i in listing.files if i.name < PRIVATE_PREFIX]
    folders = [f for f in listing.folders if f < PRIVATE_PREFIX]
    # what came before the private range is fewer than the page: fill it up
    limit = min(limit, MAX_PAGE) - len(files) - len(folders)
    rest = store.list(prefix, after=PRIVATE_PREFIX + NAME_MAX, limit=limit, **options)
    return Listing(files + rest.files, folders + rest.folders, rest.next_after)
