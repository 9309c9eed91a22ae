"""Request bodies streamed into the app while they arrive.

Waitress reads a whole body (to memory, then a temporary file) before it
calls the app, so a large upload is written twice and a database backend
cannot send while the client is still sending. Here a request whose body is
large (over ``STREAM_AFTER``) or of unknown length (chunked) is handed to a
worker thread as soon as its head is in; the main thread passes the body
through a ``BodyPipe`` that holds at most ``PIPE_BYTES``. While the pipe is
full the channel stops reading the socket, so a fast client waits on TCP
instead of filling memory.

A streaming request holds a worker thread for as long as its client takes,
so at most half the threads stream at once (the server's ``streams``, a
semaphore); past that, bodies
are buffered as before and no thread waits for them. A body that stops
arriving for ``body_timeout`` seconds fails the upload (408) and nothing is
stored. An answer given before the body was read to its end (413, 401, 503)
closes the connection, but lingering: the answer is sent, then the sending
side is shut and what the client still sends is read and dropped for up to
``LINGER_SECONDS``, so its kernel does not reset the connection (and lose
the answer) while it is still sending.
"""

from __future__ import annotations

import collections
import socket
import threading
import time

from waitress.channel import HTTPChannel

from .errors import RequestTimeout

#: Bodies up to this size are buffered by waitress (no thread waits for them).
STREAM_AFTER = 1 << 20
#: What a pipe holds before the channel stops reading the socket.
PIPE_BYTES = 1 << 20
#: How long the rest of a refused body is read and dropped before closing.
LINGER_SECONDS = 10


class BodyPipe:
    """A body on its way from the socket (``append``, the main thread) to the
    app (``read``, a worker thread). Waitress's body receivers write into it
    as into their usual buffer."""

    def __init__(self, wake, timeout: float):
        self._wake = wake  # makes the main loop ask readable() again
        self._timeout = timeout
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0  # bytes waiting in the pipe
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self.received = 0
        self.done = False  # the whole body arrived
        self.closed = False  # no one reads any more: what arrives is dropped

    # -- the channel's side (main thread) --

    def append(self, data: bytes) -> None:
        with self._cond:
            self.received += len(data)
            if not self.closed:
                self._chunks.append(bytes(data))
                self._size += len(data)
                self._cond.notify()

    def full(self) -> bool:
        return self._size >= PIPE_BYTES

    def finish(self, error: BaseException | None = None) -> None:
        """The body ended; with ``error`` it was broken or the client went away."""
        with self._cond:
            self.done = error is None
            self._error = error
            self._cond.notify()

    # -- waitress's buffer interface --

    def __len__(self) -> int:
        return self.received

    def getfile(self) -> "BodyPipe":
        return self

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify()

    # -- the app's side (a worker thread): wsgi.input --

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (all that is left if ``n`` < 0), b"" at the end;
        waits for ``n`` or for as much as the pipe holds."""
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(PIPE_BYTES), b""))
        with self._cond:
            while self._size < min(n, PIPE_BYTES) and not self.done and not self.closed:
                if self._error is not None:
                    raise self._error
                before = self.received
                if not self._cond.wait(self._timeout) and self.received == before:
                    raise RequestTimeout(
                        f"No part of the request body arrived for {self._timeout:g} s "
                        f"(after {self.received} bytes); nothing was stored.")
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                if not self.done:  # closed before its end: never a short body taken as whole
                    raise OSError("the request body was closed before its end")
                return b""
            was_full = self.full()
            data = self._take(n)
        if was_full and not self.full():
            self._wake()
        return data

    def _take(self, n: int) -> bytes:
        pieces, taken = [], 0
        while self._chunks and taken < n:
            chunk = self._chunks.popleft()
            if taken + len(chunk) > n:
                chunk, rest = chunk[:n - taken], chunk[n - taken:]
                self._chunks.appendleft(rest)
            pieces.append(chunk)
            taken += len(chunk)
        self._size -= taken
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class StreamingChannel(HTTPChannel):
    """A channel that starts a task for a large body's request once its head
    is in (see the module's docstring). ``received`` is waitress's own, with
    the hand-over added."""

    pipe: BodyPipe | None = None  # the body now streaming to a task
    lingering_until: float | None = None  # answered early: dropping the body's rest

    def readable(self) -> bool:
        if self.lingering_until is not None:
            if time.monotonic() < self.lingering_until:
                return True
            self.handle_close()
            return False
        if self.pipe is not None:  # reads on while an early answer is sent (it drops them)
            return not (self.will_close or self.pipe.full())
        return super().readable()

    def handle_write(self) -> None:
        if self.pipe is None or not self.close_when_flushed:
            return super().handle_write()
        # answered before the body ended: waitress sends the answer; then linger, not close
        self.close_when_flushed = False
        super().handle_write()
        if self.pipe is None:  # closed meanwhile (handle_close)
            return
        if self.total_outbufs_len:
            self.close_when_flushed = True
        else:
            self._linger()

    def _linger(self) -> None:
        self.pipe.close()
        self.pipe = None
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.handle_close()
            return
        self.lingering_until = time.monotonic() + LINGER_SECONDS

    def received(self, data: bytes) -> bool:
        if not data or self.lingering_until is not None:
            return False
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            while data:
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                request = self.request
                in_head = not request.headers_finished
                n = request.received(data)
                if (request.expect_continue and request.headers_finished
                        and not self.requests and not self.sent_continue):
                    self.send_continue()
                # decided once, when the head ends: a body half buffered never streams
                if (in_head and request.headers_finished and not request.completed
                        and self._may_stream(request)):
                    self._stream(request)
                if request.completed:
                    self.sent_continue = False
                    if request.pipe is not None:
                        self._end_stream(request)
                    elif not request.empty:
                        self.requests.append(request)
                        if len(self.requests) == 1:
                            self.server.add_task(self)
                    self.request = None
                if n >= len(data):
                    break
                data = data[n:]
        return True

    def _may_stream(self, request) -> bool:
        body = request.body_rcv
        return (body is not None and request.error is None and not self.requests
                and (request.chunked or request.content_length > STREAM_AFTER)
                and self.server.streams.acquire(blocking=False))

    def _stream(self, request) -> None:
        request.pipe = self.pipe = BodyPipe(self.server.pull_trigger, self.server.body_timeout)
        request.body_rcv.buf.close()  # nothing in it yet: the head just ended
        request.body_rcv.buf = self.pipe
        self.requests.append(request)
        self.server.add_task(self)

    def _end_stream(self, request) -> None:
        error = request.error
        request.pipe.finish(None if error is None else OSError(
            f"the request body is malformed ({error.body})"))
        self.pipe = None

    def handle_close(self) -> None:
        if self.pipe is not None:
            self.pipe.finish(OSError("the client closed the connection"))
            self.pipe = None
        super().handle_close()

    def service(self) -> None:
        request = self.requests[0]
        try:
            super().service()
        finally:
            if request.pipe is not None:
                self.server.streams.release()


def answer_closes(task) -> None:
    """For a task answering before its streamed body ended: close the
    connection after the answer (the rest of the body is not read)."""
    pipe = task.request.pipe
    if pipe is not None and not pipe.done:
        task.set_close_on_finish()
