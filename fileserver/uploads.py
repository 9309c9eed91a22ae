"""Reading upload bodies as streams: raw PUT bodies and multipart parts.

Multipart parsing uses the ``multipart`` package's push parser (by bottle's
author): each part's body is handed to the store as a file-like object while
it arrives, instead of being spooled to temporary files first.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

from bottle import request
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from .auth import check_csrf
from .errors import BadRequest, Forbidden, IncompleteUpload

MAX_PARTS = 1000
MAX_FIELD_BYTES = 64 * 1024


def body_length() -> int | None:
    """Announced body length; ``None`` when the body runs to end of stream."""
    length = request.content_length
    if length >= 0:
        return length
    env = request.environ
    if request.chunked or env.get("wsgi.input_terminated"):
        return None
    return 0


def multipart_boundary(content_type: str) -> str:
    """The boundary of a multipart Content-Type header (case kept), or a 400."""
    for item in content_type.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"')
    raise BadRequest("The multipart Content-Type has no boundary.")


def body_stream() -> BinaryIO:
    return request.environ["wsgi.input"]


class PartReader:
    """File-like view of one multipart part's body, pulled from the parser."""

    def __init__(self, events: Iterator):
        self._events = events
        self._buffer = b""
        self.done = False

    def read(self, n: int = -1) -> bytes:
        while not self._buffer and not self.done:
            try:
                event = next(self._events)
            except MultipartError as exc:
                raise IncompleteUpload(f"The multipart body is malformed or cut short: {exc}") from exc
            except StopIteration:
                raise IncompleteUpload("The multipart body ended inside a part.") from None
            if event is None:
                self.done = True
            else:
                self._buffer = bytes(event)
        if n is None or n < 0:
            n = len(self._buffer)
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_text(self, limit: int = MAX_FIELD_BYTES) -> str:
        data = b""
        while chunk := self.read(65536):
            data += chunk
            if len(data) > limit:
                raise IncompleteUpload(f"A form field is larger than {limit} bytes.")
        return data.decode("utf-8", "replace")

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def iter_parts(boundary: str) -> Iterator[tuple[MultipartSegment, PartReader]]:
    """Yield (segment headers, body reader) for each part, in order, streaming.

    The caller reads each body before asking for the next part; whatever it
    leaves unread is skipped.
    """
    length = body_length()
    parser = PushMultipartParser(boundary, -1 if length is None else length,
                                 max_segment_count=MAX_PARTS)
    stream = body_stream()
    events = parser.parse_blocking(stream.read)
    csrf_pending = request.environ.get("fileserver.csrf_pending", False)
    try:
        while True:
            try:
                segment = next(events)
            except StopIteration:
                break
            if not isinstance(segment, MultipartSegment):
                raise IncompleteUpload("The multipart body is malformed.")
            part = PartReader(events)
            if csrf_pending:  # a form sent with the session cookie: its token comes first
                csrf_pending = False
                if segment.name != "_csrf" or segment.filename is not None:
                    raise Forbidden("The form's CSRF token is missing: it must be the "
                                    "first field (_csrf); reload the page and try again.")
                check_csrf(part.read_text())
                continue
            yield segment, part
            part.drain()
        parser.close()
    except MultipartError as exc:
        raise IncompleteUpload(f"The multipart body is malformed or cut short: {exc}") from exc
