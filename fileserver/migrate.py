"""Copying every file and every document from one backend to another (``fileserver migrate``).

Each file streams from the source into the destination with its metadata
(type, owner, free-form dict, created and modified times). The sha256 the
destination computes while writing must equal the one the source recorded.
A file already in the destination with the same sha256 is skipped, and a
put is atomic, so an interrupted migration simply runs again.

Then every collection the core and the installed features declare (users
and tokens, the mosaic's tile index, ...) is copied document by document,
with its expiry; a document the destination already has with the same body
is skipped, one with another body is replaced. So a migrated server makes
mosaics without re-importing its tiles.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

from .documents import Conflict, Documents
from .errors import BackendUnavailable, Error, FileNotFound, StoreError
from .store import FileInfo, Store, format_size


@dataclass
class Report:
    files: int = 0
    bytes: int = 0
    copied: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    documents: int = 0
    documents_copied: int = 0


def all_files(store: Store, page: int = 500) -> Iterator[FileInfo]:
    after = None
    while True:
        listing = store.list(after=after, limit=page)
        yield from listing.files
        if listing.next_after is None:
            return
        after = listing.next_after


def copy_file(source: Store, target: Store, info: FileInfo, name: str | None = None) -> bool:
    """Copy one file, with its owner, type, meta and times, to ``name`` (default:
    the same name); False if the target already had it. Raises on a mismatch."""
    name = info.name if name is None else name
    try:
        if target.info(name).sha256 == info.sha256:
            return False
    except FileNotFound:
        pass
    with source.open(info.name) as reader:
        stored, _ = target.put(name, reader, content_type=info.content_type,
                               owner=info.owner, meta=info.meta, length=info.size,
                               created=info.created, modified=info.modified)
    if stored.sha256 != info.sha256:
        target.delete(name)
        raise StoreError(f"sha256 mismatch: the source recorded {info.sha256}, "
                         f"the bytes read hash to {stored.sha256}; not copied")
    return True


class Progress:
    """One status line: files, bytes, rate and ETA (redrawn on a terminal)."""

    def __init__(self, total_files: int, total_bytes: int, out: TextIO = sys.stderr,
                 clock: Callable[[], float] = time.monotonic):
        self.total_files, self.total_bytes = total_files, total_bytes
        self.out, self.clock = out, clock
        self.started = clock()
        self.last_line = 0.0
        self.tty = out.isatty()

    def line(self, report: Report) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = report.bytes / elapsed
        left = self.total_bytes - report.bytes
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        return (f"{report.files}/{self.total_files} files, "
                f"{format_size(report.bytes)}/{format_size(self.total_bytes)}, "
                f"{format_size(int(rate))}/s, ETA {eta} "
                f"({report.copied} copied, {report.skipped} already there, "
                f"{len(report.failed)} failed)")

    def update(self, report: Report, final: bool = False) -> None:
        now = self.clock()
        if self.tty:
            self.out.write("\r" + self.line(report) + ("\n" if final else ""))
        elif final or now - self.last_line >= 5:
            self.out.write(self.line(report) + "\n")
        else:
            return
        self.last_line = now
        self.out.flush()


def migrate(source: Store, target: Store, out: TextIO = sys.stderr) -> Report:
    """Copy what ``target`` lacks; a down backend stops it (run it again later)."""
    total_files = total_bytes = 0
    for info in all_files(source):  # a first pass over metadata only, for the ETA
        total_files += 1
        total_bytes += info.size
    progress = Progress(total_files, total_bytes, out)
    report = Report()
    for info in all_files(source):
        try:
            if copy_file(source, target, info):
                report.copied += 1
            else:
                report.skipped += 1
        except FileNotFound:
            report.skipped += 1  # deleted from the source meanwhile
        except BackendUnavailable:
            progress.update(report, final=True)
            raise
        except Error as exc:
            report.failed.append((info.name, str(exc)))
        report.files += 1
        report.bytes += info.size
        progress.update(report)
    progress.update(report, final=True)
    from .features import all_collections

    for spec in all_collections():
        copy_collection(source.documents(), target.documents(), spec, report)
    return report


def copy_collection(source: Documents, target: Documents, spec, report: Report) -> None:
    """Copy one collection's documents that ``target`` lacks or has otherwise."""
    for docs in (source, target):
        docs.declare(spec.name, spec.indexed)
    for doc in source.all(spec.name):
        report.documents += 1
        there = target.get(spec.name, doc.id)
        if there is not None and there.body == doc.body and there.expires == doc.expires:
            continue
        try:
            if there is None:
                target.create(spec.name, doc.id, doc.body, expires=doc.expires)
            else:
                target.replace(spec.name, doc.id, doc.body, there.version, expires=doc.expires)
        except Conflict as exc:  # written meanwhile by a server on the destination
            report.failed.append((f"{spec.name}/{doc.id}", str(exc)))
            continue
        report.documents_copied += 1
