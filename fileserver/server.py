"""Running the app under waitress.

Large request bodies stream into the app while they arrive (streaming.py);
smaller ones are read by waitress first. A body announced larger than the
limit is refused by waitress itself (``max_request_body_size``) before the
app runs; a chunked one, by the store while it streams in. Waitress's own
error answers (413, 400 for broken framing) get the same JSON or HTML
shape as ours.

The access log is written by waitress's tasks (ours subclass them), so it
has every answer, waitress's own 413s and 400s included, the bytes really
sent, and the client address as the throttle sees it (``REMOTE_ADDR``
after ``trusted_proxy``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import sys
import threading
import time

from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.adjustments import Adjustments
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

from .config import Settings
from .store import too_large_message
from .sending import SendfileChannel, use_sendfile
from .streaming import StreamingChannel, answer_closes
from .web import render

#: glibc's mallopt() parameter for the number of malloc arenas.
M_ARENA_MAX = -8
#: After a request that moved this much, free memory goes back to the system.
TRIM_AFTER = 16 * 1024 * 1024

#: Room for multipart framing around the largest allowed file.
MULTIPART_SLACK = 1024 * 1024
UNLIMITED = 2**62


class _Logged:
    """A task that writes one access-log line when it is done: the combined
    log format, then the seconds it took and the request body's bytes."""

    def service(self) -> None:
        try:
            super().service()
        finally:
            log = self.channel.server.access_log
            if log is not None:
                log.info(access_line(self))
            trim_after(self)


def access_line(task) -> str:
    """The task's line. A request that failed to parse (a broken request
    line, answered 400 by waitress) has no method or path: ``-`` stands in."""
    request, environ = task.request, getattr(task, "environ", None) or {}
    headers = getattr(request, "headers", None) or {}
    method = getattr(request, "command", None) or "-"
    user = environ.get("fileserver.user")
    address = environ.get("REMOTE_ADDR") or task.channel.addr[0]
    sent = 0 if method == "HEAD" else (task.content_bytes_written or (task.content_length or 0))
    query = getattr(request, "query", "")
    target = (getattr(request, "path", None) or "-") + (f"?{query}" if query else "")
    started = getattr(task, "start_time", None) or time.time()
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(started))
    status = (task.status or "").split(" ", 1)[0] or "-"
    return (f'{address} - {getattr(user, "name", None) or "-"} [{when}] '
            f'"{method} {_quoted(target)} HTTP/{task.version}" {status} {sent} '
            f'"{_quoted(headers.get("REFERER", "-"))}" '
            f'"{_quoted(headers.get("USER_AGENT", "-"))}" '
            f'{time.time() - started:.3f} '
            f'{getattr(request, "content_length", 0) or 0}')


_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')


def _quoted(text: str) -> str:
    """A path or header as one log field: quotes, backslashes and control
    characters from clients escaped, so a line cannot be forged or split."""
    return _UNSAFE.sub(lambda m: "\\" + m[0] if m[0] in '"\\' else f"\\x{ord(m[0]):02x}",
                       text)


class AccessLog:
    """Lines collected from the tasks and written by waitress's loop, once a
    turn: the loop wakes after every request, so ``tail -f`` still shows
    each one as it ends. Not the logging module (its records, handlers and
    locks cost a tenth of a small GET), and not a write per task: a task
    that writes gives up the GIL and waits to get it back from the others,
    11% of 4 KiB GETs per second in an A/B run."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self._lines: list[str] = []

    def info(self, line: str) -> None:
        with self._lock:
            self._lines.append(line + "\n")

    def flush(self) -> None:
        if not self._lines:
            return
        with self._lock:
            lines, self._lines = self._lines, []
        self._stream.write("".join(lines))
        self._stream.flush()


def access_logger(where: str) -> AccessLog | None:
    """``access_log``: ``off``, ``stdout`` or a file's path."""
    if where == "off":
        return None
    if where == "stdout":
        return AccessLog(sys.stdout)
    return AccessLog(open(where, "a", encoding="utf-8"))


class _Task(_Logged, WSGITask):
    _bodiless = False  # a 204 or 304 on a connection that stays open

    def build_response_header(self) -> bytes:
        answer_closes(self)
        # Waitress closes the connection after any HTTP/1.1 answer without a
        # Content-Length, 204 and 304 included, which have no body to delimit:
        # every DELETE, tus PATCH and revalidation would cost a new connection.
        self._bodiless = (self.version == "1.1" and self.status[:3] in ("204", "304")
                          and self.request.headers.get("CONNECTION", "").lower() != "close")
        try:
            return super().build_response_header()
        finally:
            self._bodiless = False

    def set_close_on_finish(self) -> None:
        if not self._bodiless:
            super().set_close_on_finish()

    def get_environment(self) -> dict:
        environ = super().get_environment()
        use_sendfile(environ)
        return environ


class ErrorPageTask(_Logged, ErrorTask):
    """Waitress's own errors, worded and shaped like the app's."""

    def execute(self) -> None:
        error = self.request.error
        message = error.body
        if error.code == 413:
            message = too_large_message(self.channel.server.adj.max_request_body_size
                                        - MULTIPART_SLACK)
        self.status = f"{error.code} {error.reason}"
        if "text/html" in self.request.headers.get("ACCEPT", ""):
            body = render("error", status=error.code, message=message, reason=self.status)
            content_type = "text/html; charset=utf-8"
        else:
            body = json.dumps({"error": message, "status": error.code})
            content_type = "application/json"
        body = body.encode("utf-8")
        self.response_headers.append(("Content-Type", content_type))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Parser(HTTPRequestParser):
    """Refuses (400) a path or header that is not UTF-8: Bottle would drop the
    bad bytes from a path (``a%ffb`` stored as ``ab``) and fail with a 500 on
    reading such a header."""

    pipe = None  # the BodyPipe when the body streams into the app

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        fields = [("path", self.path)]
        fields += [(f"{k.replace('_', '-').title()} header", v) for k, v in self.headers.items()]
        for what, text in fields:
            try:
                text.encode("latin-1").decode("utf-8")
            except UnicodeError:
                raise ParsingError(f"The request's {what} is not valid UTF-8.") from None


class _Channel(StreamingChannel, SendfileChannel):
    task_class = _Task
    error_task_class = ErrorPageTask
    parser_class = _Parser

    def writable(self) -> bool:
        """Not while a task is sending its own answer (it holds the outbuf
        lock): waitress would see the socket writable, fail to take the lock,
        send nothing and poll again at once, spinning on the GIL the task
        needs. A task that leaves data unsent wakes the loop to send it."""
        if self.requests and self.total_outbufs_len and not self.will_close:
            if not self.outbuf_lock.acquire(False):
                return False
            self.outbuf_lock.release()
        return super().writable()


class _Server(TcpWSGIServer):
    channel_class = _Channel
    access_log: AccessLog | None = None

    def readable(self) -> bool:
        """Asked once each turn of the loop: the turn's log lines go out."""
        if self.access_log is not None:
            self.access_log.flush()
        return super().readable()

    def close(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()
        super().close()


def connection_limit(most: int = 1000) -> int:
    """Open connections to accept at once: ``most``, within half the process's
    descriptor limit (past it, accept() would fail in a busy loop)."""
    try:
        import resource  # Unix only
    except ImportError:
        return 100
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return most if soft == resource.RLIM_INFINITY else max(100, min(most, soft // 2))


def make_server(app, settings: Settings):
    """A waitress server for ``app`` (not yet running); call ``.run()``."""
    limit = settings.max_upload_size
    options = dict(host=settings.host, port=settings.port, threads=settings.threads,
                   max_request_body_size=UNLIMITED if limit is None else limit + MULTIPART_SLACK,
                   ident="fileserver", clear_untrusted_proxy_headers=True,
                   # Read uploads from the socket in large pieces: with the
                   # 8 KiB default, receiving is a Python loop per 8 KiB.
                   recv_bytes=256 * 1024,
                   # A task streaming a response waits while 4 MiB of it are
                   # unsent (default 16 MiB: a GridFS download then grew the
                   # server by 78 MiB, now 38); that much stays in memory
                   # (default 1 MiB) instead of spilling to a temporary file.
                   outbuf_high_watermark=4 * 1024 * 1024,
                   outbuf_overflow=16 * 1024 * 1024,
                   # Waitress stops accepting at 100 open connections (its
                   # default), so 100 slow or idle clients shut everyone out;
                   # poll() because select() fails past 1024 descriptors.
                   connection_limit=connection_limit(), asyncore_use_poll=True)
    if settings.trusted_proxy:  # behind a reverse proxy: client address and scheme from it
        options.update(trusted_proxy=settings.trusted_proxy, trusted_proxy_count=1,
                       trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto",
                                              "x-forwarded-host"})
    adj = Adjustments(**options)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict = {}
    servers = [_Server(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=info)
               for info in adj.listen]
    log = access_logger(settings.access_log)
    # requests that may stream at once: the other half of the threads stays free for GETs
    streams = threading.BoundedSemaphore(max(1, adj.threads // 2))
    for server in servers:
        server.access_log = log
        server.streams, server.body_timeout = streams, settings.body_timeout
    if len(servers) == 1:
        return servers[0]
    listen = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj=adj, effective_listen=listen, dispatcher=dispatcher)


def server_url(server) -> str:
    if isinstance(server, MultiSocketServer):
        host, port = server.effective_listen[0]
    else:
        host, port = server.effective_host, server.effective_port
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def tune_malloc(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas before threads start, and return freed
    memory after large requests; True if the arenas were capped.

    glibc gives busy threads arenas of their own (up to 8 per core), and
    memory freed in one is rarely returned: with waitress's threads moving
    large buffers through a database driver, the server grew by 274 MiB over
    six 200 MiB GridFS round trips, and by 17 MiB with 2 arenas (README,
    Benchmarks). The buffers of a large transfer (socket reads, database
    chunks) are freed into the arenas too: ``malloc_trim`` after each
    request that moved 16 MiB or more returns them. An operator's
    MALLOC_ARENA_MAX wins; other C libraries are left alone.
    """
    global _malloc_trim
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _malloc_trim = libc.malloc_trim
        if os.environ.get("MALLOC_ARENA_MAX"):
            return False
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # no glibc (musl, macOS)
        return False


_malloc_trim = None


def trim_after(task) -> None:
    """Memory back to the system once a large request is done (see tune_malloc)."""
    moved = (task.content_bytes_written or 0) + (getattr(task.request, "content_length", 0) or 0)
    if _malloc_trim is not None and moved >= TRIM_AFTER:
        _malloc_trim(0)
