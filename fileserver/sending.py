"""Response bytes reach the socket with as few copies as possible.

A local file's bytes go from the page cache to the socket with
``os.sendfile``, not through Python.

Waitress sends a ``wsgi.file_wrapper`` body by reading a piece into Python,
sending it, seeking back over what the socket did not take, and reading
again. ``SendfileBuffer`` is that wrapper for files with a descriptor; the
channel (``SendfileChannel``) hands such a buffer to the kernel, from the
file's position, as much as the socket takes at a time. Others (a database
backend's reader) keep waitress's path, but their pieces are not copied:
waitress appends every piece written to an in-memory file and reads it
back out to send it (two copies of each byte, most of a GridFS or CouchDB
download's time), so the channel queues a large piece as it is
(``BytesBuffer``) and sends from it.
"""

from __future__ import annotations

import os
import time

from waitress.buffers import ReadOnlyFileBasedBuffer
from waitress.channel import HTTPChannel
from waitress.wasyncore import _DISCONNECTED


class SendfileBuffer(ReadOnlyFileBasedBuffer):
    """``wsgi.file_wrapper``: knows its file's descriptor, if it has one."""

    def __init__(self, file, block_size: int = 32768):
        super().__init__(file, block_size)
        try:
            self.fd = file.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None

    def get(self, numbytes: int = -1, skip: bool = False) -> bytes:
        if self.fd is not None and not skip:
            return b""  # waitress's loop stops here: the channel sends it
        return super().get(numbytes, skip)


#: Pieces this large are queued as they are; smaller ones join waitress's
#: buffer, so a small answer goes out with its headers in one send.
QUEUE_AS_IS = 64 * 1024


class BytesBuffer(ReadOnlyFileBasedBuffer):
    """One bytes object as a channel output buffer, sent from where it is.
    Waitress queues a file-wrapper buffer on its own, which is what this
    needs (it is never appended to)."""

    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self.remain = len(data)

    def get(self, numbytes: int = -1, skip: bool = False) -> memoryview:
        start = len(self._view) - self.remain
        end = len(self._view) if numbytes < 0 else start + numbytes
        if skip:
            self.remain -= min(end, len(self._view)) - start
        return self._view[start:end]

    def skip(self, numbytes: int, allow_prune: int = 0) -> None:
        if numbytes > self.remain:
            raise ValueError(f"can't skip {numbytes} bytes of {self.remain}")
        self.remain -= numbytes

    def close(self) -> None:
        self._view = memoryview(b"")
        self.remain = 0


def _sendable(buf) -> bool:
    """A file buffer with bytes left that the kernel can send."""
    return isinstance(buf, SendfileBuffer) and buf.fd is not None and buf.remain > 0


class SendfileChannel(HTTPChannel):
    def write_soon(self, data) -> int:
        if type(data) is bytes and len(data) >= QUEUE_AS_IS:
            data = BytesBuffer(data)
        return super().write_soon(data)

    def _flush_some(self, do_close: bool = True) -> bool:
        sent = False
        while True:
            head = self.outbufs[0]
            if _sendable(head):
                if not self._sendfile(head, do_close):
                    return sent
                sent = True
                if head.remain:
                    return sent  # the socket is full
            # waitress's loop: plain buffers, and a finished file buffer is dropped
            if not super()._flush_some(do_close):
                return sent
            sent = True
            if not _sendable(self.outbufs[0]):
                return sent

    def _sendfile(self, buf: SendfileBuffer, do_close: bool) -> int:
        total = 0
        while buf.remain:
            try:
                n = os.sendfile(self._fileno, buf.fd, buf.file.tell(), buf.remain)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in _DISCONNECTED:
                    raise
                if do_close:
                    self.handle_close()
                break
            if n == 0:  # the file ended early (truncated under us)
                raise OSError(f"the file ended {buf.remain} bytes early")
            buf.skip(n, True)
            self.total_outbufs_len -= n
            total += n
        if total:
            self.last_activity = time.time()
        return total


def use_sendfile(environ: dict) -> None:
    """In a task's environ: file bodies get the wrapper above."""
    environ["wsgi.file_wrapper"] = SendfileBuffer
