"""What keeps the embedded store's writes durable: an fsync of a folder, and
early syncs of a large upload so that its last fsync has little to wait for."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EarlySync:
    """While a large upload is written, ``fdatasync`` what is written so far in
    a helper thread every ``EVERY`` bytes: the disk writes while the rest
    still arrives, and the fsync at the end has little left to wait for
    (a 200 MiB upload otherwise waits as long for it as for receiving)."""

    EVERY = 32 * 1024 * 1024

    def __init__(self, out, enabled: bool):
        self._out, self._enabled = out, enabled
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def _sync(self) -> None:
        try:
            os.fdatasync(self._out.fileno())
        except OSError as exc:  # Linux reports a failed writeback once: keep it
            self._error = exc

    def wrote(self, n: int) -> None:
        self._pending += n
        if not self._enabled or self._pending < self.EVERY:
            return
        if self._thread is not None and self._thread.is_alive():
            return  # the disk is behind: the next round takes what this one wrote
        self._out.flush()
        self._pending = 0
        self._thread = threading.Thread(target=self._sync, name="early-sync", daemon=True)
        self._thread.start()

    def __enter__(self) -> "EarlySync":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:  # before the file is closed, even on failure
            self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error
