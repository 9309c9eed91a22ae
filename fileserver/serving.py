"""Serving a stored file over HTTP: what bottle's ``static_file`` does for
local paths, for any store (and ``send_asset`` for the app's own files).

Conditional requests (ETag from the stored sha256, Last-Modified, 304), one
byte range (206 / 416, the offset handed to the store so the backend seeks),
safe headers for user content, and a streamed body.
"""

from __future__ import annotations

import email.utils
import re
from urllib.parse import quote

from pathlib import Path

from bottle import HTTPResponse, parse_range_header, request, response, static_file

from .errors import FileNotFound, RangeNotSatisfiable
from .store import CHUNK, FileInfo, Store, StoredFile

#: Types a browser would run as an active page: always sent as attachments.
ACTIVE_TYPES = {"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml",
                "application/xml", "text/javascript", "application/javascript"}
SMALL_FILE = 64 * 1024
_SINGLE_RANGE = re.compile(r"bytes=\s*(\d*)\s*-\s*(\d*)\s*")


def etag(info: FileInfo) -> str:
    return f'"{info.sha256}"'


def content_disposition(name: str, attachment: bool) -> str:
    """RFC 6266 / 5987: an ASCII fallback plus the exact UTF-8 name."""
    filename = name.rsplit("/", 1)[-1]
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    kind = "attachment" if attachment else "inline"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def send_asset(root: Path, path: str):
    """One of the app's own files (``views/static``): bottle's ``static_file``
    with a quoted ETag (RFC 9110 §8.8.3) and an If-None-Match that understands
    lists and weak tags, which bottle's exact string comparison does not."""
    file = (root / path.strip("/")).resolve()
    if root.resolve() not in file.parents or not file.is_file():
        raise FileNotFound(path)
    stat = file.stat()
    tag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}  # revalidate: a 304 is cheap
    if etag_matches(request.get_header("If-None-Match", ""), tag, weak=True):
        return HTTPResponse(status=304, **headers)
    return static_file(str(file.relative_to(root.resolve())), root=str(root.resolve()),
                       etag=tag, headers=headers)


def etag_matches(header: str, tag: str, weak: bool) -> bool:
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if weak and candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == tag:
            return True
    return False


def _not_modified(info: FileInfo) -> bool:
    inm = request.get_header("If-None-Match")
    if inm is not None:
        return etag_matches(inm, etag(info), weak=True)
    ims = request.get_header("If-Modified-Since")
    if ims:
        when = email.utils.parsedate_to_datetime(ims) if _valid_date(ims) else None
        return when is not None and int(info.modified.timestamp()) <= when.timestamp()
    return False


def _valid_date(text: str) -> bool:
    try:
        return email.utils.parsedate_to_datetime(text).tzinfo is not None
    except (TypeError, ValueError):
        return False


def _wanted_range(info: FileInfo) -> tuple[int, int] | None | bool:
    """(start, end) for a satisfiable single range, False if unsatisfiable,
    None when the whole file should be sent (no, invalid or stale range)."""
    header = request.get_header("Range")
    match = _SINGLE_RANGE.fullmatch(header.strip()) if header else None
    if not match or match.groups() == ("", "") or (
            all(match.groups()) and int(match[1]) > int(match[2])):
        return None  # absent, multi-range or malformed: RFC 9110 lets us ignore it
    if_range = request.get_header("If-Range")
    if if_range:
        if if_range.strip().startswith(('"', "W/")):
            if if_range.strip() != etag(info):
                return None
        elif if_range.strip() != last_modified(info):
            return None
    ranges = list(parse_range_header(header.strip().replace(" ", ""), info.size))
    return ranges[0] if ranges else False


def last_modified(info: FileInfo) -> str:
    return email.utils.format_datetime(info.modified, usegmt=True)


def file_headers(info: FileInfo, download: bool) -> dict[str, str]:
    active = info.content_type.split(";")[0].strip().lower() in ACTIVE_TYPES
    return {
        "Content-Type": info.content_type,
        "ETag": etag(info),
        "Last-Modified": last_modified(info),
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-cache",
        "Content-Disposition": content_disposition(info.name, download or active),
        # User uploads never run as pages of this origin.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }


def send_stored(store: Store, name: str, *, download: bool = False):
    """The response for GET/HEAD of ``name``; the body streams from the store."""
    body = None
    if request.method == "GET" and not request.get_header("Range"):
        body = store.open(name)  # the common case: one store call
        info = body.info
    else:
        info = store.info(name)
    headers = file_headers(info, download)
    if _not_modified(info):
        if body is not None:
            body.close()
        for key in ("Content-Type", "Content-Disposition"):
            headers.pop(key)
        return _respond(304, headers, b"")
    wanted = _wanted_range(info)
    if wanted is False:
        raise RangeNotSatisfiable(f"The range {request.get_header('Range')!r} is outside the "
                                  f"file ({info.size} bytes).", **{"Content-Range": f"bytes */{info.size}"})
    start, end = wanted or (0, info.size)
    if request.method == "HEAD":
        body = b""
    elif body is None:
        body = store.open(name, start, end)  # the backend seeks: a range reads only itself
        if body.info.sha256 != info.sha256:  # replaced meanwhile: describe what we send
            body.close()
            return send_stored(store, name, download=download)
    if not isinstance(body, bytes):
        if end - start <= SMALL_FILE:
            with body:  # cheaper as one bytes object than through the file wrapper
                body = body.read()
        elif not body.is_local_file():
            body = _chunks(body)
    headers["Content-Length"] = str(end - start)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    return _respond(206 if wanted else 200, headers, body)


def _chunks(body: StoredFile):
    """Stream a remote reader front to back. Waitress's file wrapper reads,
    seeks back and seeks forward for every piece it sends: cheap on a local
    file, a new database request each time on GridFS or CouchDB."""
    with body:
        while chunk := body.read(CHUNK):
            yield chunk


def _respond(status: int, headers: dict[str, str], body):
    # Headers go on bottle's per-request response: a new HTTPResponse per GET
    # costs a noticeable share of a small file's time.
    response.status = status
    for key, value in headers.items():
        response.set_header(key, value)
    return body
