"""A resumable upload's state: one document in ``uploads``, its bytes in parts.

Each PATCH streams its body into a part of its own, a private file of the
active store (``.fileserver/uploads/<id>/<offset>-<token>``), then moves the
document's offset on with the version it read: of two requests continuing
one upload at once (in one process or two), one wins and the other's part
is removed (409). Parts the document does not list (a request that failed
or was cut before its document changed) are never read, and go with the
upload. The last part stores the whole file with the store's own ``put``
(atomic, hashed, owned, exactly as a PUT), reading the parts in order, so
memory stays bounded whatever the size; then the parts are deleted and the
document stays, marked done, until it expires (a client that asks again
learns it finished).

Everything lives in the backend, so any server process on the same database
continues any upload, and a restarted server continues its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Callable

from fileserver.documents import Documents, VersionConflict
from fileserver.errors import BadRequest, Conflict, Error, IncompleteUpload, TooLarge
from fileserver.store import MAX_PAGE, PRIVATE_PREFIX, Store

COLLECTION = "uploads"
PARTS = PRIVATE_PREFIX + "uploads/"
CHECKSUMS = ("sha256", "sha1", "md5")


class ChecksumMismatch(Error):
    """tus's own status: the part's bytes do not match ``Upload-Checksum``."""

    status = 460


@dataclass
class Resumable:
    """An upload as its document holds it."""

    id: str
    length: int
    name: str
    owner: str | None
    metadata: str  # Upload-Metadata as the client sent it
    content_type: str | None
    exists: str  # keep or replace, as a PUT's ?exists=
    offset: int = 0
    parts: list[list[Any]] = field(default_factory=list)  # [part name, size], in order
    done: bool = False
    expires: float = 0.0
    version: str = ""

    def body(self) -> dict[str, Any]:
        return {"length": self.length, "name": self.name, "owner": self.owner,
                "metadata": self.metadata, "content_type": self.content_type,
                "exists": self.exists, "offset": self.offset, "parts": self.parts,
                "done": self.done}

    @classmethod
    def from_doc(cls, doc) -> "Resumable":
        return cls(id=doc.id, version=doc.version, expires=doc.expires or 0.0, **doc.body)

    @property
    def expired(self) -> bool:
        return self.expires < time.time()


def new_id() -> str:
    return secrets.token_hex(16)


def part_folder(upload_id: str) -> str:
    return f"{PARTS}{upload_id}/"


class Received:
    """The request body as a part's source: at most ``most`` bytes (more is
    413, and the store keeps nothing), hashed if a checksum was sent. A body
    cut off by the client ends here instead of failing, so what arrived is
    kept (tus asks servers to keep as much as they can)."""

    def __init__(self, source: BinaryIO, most: int, algorithm: str | None):
        self._source, self._left = source, most
        self._hash = hashlib.new(algorithm) if algorithm else None
        self.size, self.cut = 0, False

    def read(self, n: int = -1) -> bytes:
        if self.cut:
            return b""
        try:
            data = self._source.read(n)
        except Error:
            raise
        except OSError:  # the client went away mid-body
            self.cut = True
            return b""
        if len(data) > self._left:
            raise TooLarge(f"The body runs past the upload's length ({self.size + self._left} "
                           "more bytes were expected at most).")
        self._left -= len(data)
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)
        return data

    def digest(self) -> bytes | None:
        return None if self._hash is None else self._hash.digest()


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: sha256 <base64>`` -> (algorithm, digest)."""
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: {algorithm!r} is not supported; use one of "
                         f"{', '.join(CHECKSUMS)}.")
    try:
        return algorithm, base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum: the digest is not base64.") from None


class Parts:
    """The uploads of one store: documents and parts, read and moved on."""

    def __init__(self, store: Store, documents: Documents, expiration: float):
        self.store, self.documents, self.expiration = store, documents, expiration

    def get(self, upload_id: str) -> Resumable | None:
        doc = self.documents.get(COLLECTION, upload_id)
        return None if doc is None else Resumable.from_doc(doc)

    def create(self, upload: Resumable) -> Resumable:
        doc = self.documents.create(COLLECTION, upload.id, upload.body(),
                                    expires=time.time() + self.expiration)
        return Resumable.from_doc(doc)

    def append(self, upload: Resumable, body: BinaryIO, checksum: tuple[str, bytes] | None,
               finish: Callable[[BinaryIO], str]) -> Resumable:
        """Store ``body`` as the part at ``upload.offset``; on the last byte,
        ``finish(whole)`` stores the file from all parts and returns the name
        it got (another, if both were kept). Returns the new state."""
        received = Received(body, upload.length - upload.offset,
                            checksum[0] if checksum else None)
        part = f"{part_folder(upload.id)}{upload.offset:020d}-{secrets.token_hex(4)}"
        self.store.put(part, received, content_type="application/octet-stream")
        try:
            if checksum and (received.cut or received.digest() != checksum[1]):
                raise ChecksumMismatch(f"The part's {checksum[0]} does not match Upload-Checksum"
                                       "; it was discarded. Send it again.")
            if received.size == 0:
                if received.cut:
                    raise IncompleteUpload("The body was cut off before any byte arrived.")
                self.store.delete(part)
                return upload
            parts = upload.parts + [[part, received.size]]
            offset = upload.offset + received.size
            done = offset == upload.length
            name = finish(Joined(self.store, [n for n, _ in parts])) if done else upload.name
            moved = replace(upload, offset=offset, done=done, parts=[] if done else parts,
                            name=name)
            try:
                doc = self.documents.replace(COLLECTION, upload.id, moved.body(),
                                             upload.version,
                                             expires=time.time() + self.expiration)
            except VersionConflict:
                raise Conflict("Another request continued this upload meanwhile; ask for its "
                               "offset (HEAD) and go on from there.") from None
        except BaseException:
            self.store.delete(part)
            raise
        if done:
            self.remove_parts(upload.id)
        return Resumable.from_doc(doc)

    def finish_empty(self, upload: Resumable, finish: Callable[[BinaryIO], str]) -> Resumable:
        """An upload of length 0 is done when it is made."""
        name = finish(Joined(self.store, []))
        done = replace(upload, done=True, name=name)
        return Resumable.from_doc(self.documents.replace(
            COLLECTION, upload.id, done.body(), upload.version,
            expires=time.time() + self.expiration))

    def terminate(self, upload: Resumable) -> None:
        self.documents.delete(COLLECTION, upload.id)
        self.remove_parts(upload.id)

    def remove_parts(self, upload_id: str) -> None:
        folder = part_folder(upload_id)
        while files := self.store.list(folder, limit=MAX_PAGE).files:
            for info in files:
                self.store.delete(info.name)

    def sweep(self) -> int:
        """Expired uploads and parts no upload names go; returns how many uploads."""
        now, removed = time.time(), 0
        for doc in list(self.documents.all(COLLECTION)):
            if doc.expires is not None and doc.expires < now:
                self.terminate(Resumable.from_doc(doc))
                removed += 1
        after = None
        while True:
            listing = self.store.list(PARTS, after=after, limit=MAX_PAGE, delimiter="/")
            for folder in listing.folders:
                upload_id = folder[len(PARTS):-1]
                if self.documents.get(COLLECTION, upload_id) is None:
                    self.remove_parts(upload_id)
            if listing.next_after is None:
                return removed
            after = listing.next_after


class Joined:
    """The parts, read one after another as one file."""

    def __init__(self, store: Store, names: list[str]):
        self._store, self._names, self._current = store, list(names), None

    def read(self, n: int = -1) -> bytes:
        while True:
            if self._current is None:
                if not self._names:
                    return b""
                self._current = self._store.open(self._names.pop(0))
            data = self._current.read(n)
            if data:
                return data
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
