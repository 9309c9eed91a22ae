"""Copying every file from one store to another (``fileserver migrate``).

Each file streams from the source into the destination with its metadata
(type, owner, free-form dict, created and modified times). The sha256 the
destination computes while writing must equal the one the source recorded.
A file already in the destination with the same sha256 is skipped, and a
put is atomic, so an interrupted migration simply runs again.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

from .errors import BackendUnavailable, FileNotFound, StoreError
from .store import FileInfo, Store, format_size


@dataclass
class Report:
    files: int = 0
    bytes: int = 0
    copied: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def all_files(store: Store, page: int = 500) -> Iterator[FileInfo]:
    after = None
    while True:
        listing = store.list(after=after, limit=page)
        yield from listing.files
        if listing.next_after is None:
            return
        after = listing.next_after


def copy_file(source: Store, target: Store, info: FileInfo) -> bool:
    """Copy one file; False if the target already had it. Raises on a mismatch."""
    try:
        if target.info(info.name).sha256 == info.sha256:
            return False
    except FileNotFound:
        pass
    with source.open(info.name) as reader:
        stored, _ = target.put(info.name, reader, content_type=info.content_type,
                               owner=info.owner, meta=info.meta, length=info.size,
                               created=info.created, modified=info.modified)
    if stored.sha256 != info.sha256:
        target.delete(info.name)
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
        except StoreError as exc:
            report.failed.append((info.name, str(exc)))
        report.files += 1
        report.bytes += info.size
        progress.update(report)
    progress.update(report, final=True)
    return report
