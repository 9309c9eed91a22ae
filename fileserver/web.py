"""Small helpers shared by the routes: content negotiation and templates."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import bottle
from bottle import request, response

from .errors import BadRequest, FileNotFound, Forbidden, MethodNotAllowed
from .store import PRIVATE_PREFIX, validate_prefix
from .views import VIEWS_DIR


def wants_html() -> bool:
    """Browsers get HTML; curl and API clients (no text/html in Accept) get JSON."""
    fmt = request.query.get("format")
    if fmt in ("json", "html"):
        return fmt == "html"
    return "text/html" in request.get_header("Accept", "")


# What a folder listing can be, in the order that wins a tie: generic clients
# (rclone, fsspec, wget, browsers) read HTML links, so HTML is the default.
LISTING_FORMATS = {"html": "text/html", "json": "application/json", "text": "text/plain"}


def listing_format() -> str:
    """``?format=`` if given, else the type the Accept header prefers by its
    q-values (RFC 9110 §12.5.1), else HTML."""
    fmt = request.query.get("format")
    if fmt:
        if fmt not in LISTING_FORMATS:
            raise BadRequest(f"The query parameter format must be one of "
                             f"{', '.join(LISTING_FORMATS)}, not {fmt!r}.")
        return fmt
    ranges = _accept_ranges(request.get_header("Accept", ""))
    best = max(LISTING_FORMATS, key=lambda f: _quality(ranges, LISTING_FORMATS[f]))
    return best if _quality(ranges, LISTING_FORMATS[best]) > 0 else "html"


def _accept_ranges(header: str) -> list[tuple[str, float]]:
    ranges = []
    for item in header.split(","):
        media, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if media:
            ranges.append((media.lower(), q))
    return ranges or [("*/*", 1.0)]


def _quality(ranges: list[tuple[str, float]], media: str) -> float:
    """The q of the most specific range matching ``media`` (0 if none does)."""
    kind = media.split("/")[0] + "/*"
    for candidate in (media, kind, "*/*"):
        qs = [q for m, q in ranges if m == candidate]
        if qs:
            return max(qs)
    return 0.0


def render(name: str, **values: Any) -> str:
    """Render ``views/<name>.tpl``; the lookup path is absolute, so installed
    copies find their templates from any working directory."""
    try:  # who is logged in, for the header; nobody outside a request (waitress's errors)
        env, auth = request.environ, request.app.config.get("fileserver.auth")
    except (RuntimeError, KeyError, AttributeError):
        env, auth = {}, None
    if env:  # pages carry forms with the session's CSRF token: not for any cache
        response.set_header("Cache-Control", "no-store")
    values.setdefault("user", env.get("fileserver.user"))
    values.setdefault("csrf", env.get("fileserver.csrf"))
    values.setdefault("accounts_in_use", bool(auth and auth.accounts_in_use()))
    return bottle.template(name, template_lookup=[str(VIEWS_DIR)], request=request, **values)


def json_response(data: Any, status: int = 200, **headers: str) -> str:
    """A JSON answer on the request's own response, so what a route already set
    there (a session cookie) goes out with it; return it from the route."""
    response.status = status
    response.content_type = "application/json"
    for name, value in headers.items():
        response.set_header(name, value)
    return json.dumps(data)


def require_form_delete(what: str) -> None:
    """A form's stand-in for DELETE (forms can only GET or POST): the field
    ``_method=DELETE``, else 405 saying how to delete ``what``."""
    if request.forms.get("_method", "").upper() != "DELETE":
        raise MethodNotAllowed(f"Delete {what} with DELETE {request.path} (or POST the "
                               "form field _method=DELETE).", Allow="DELETE")


def query_int(key: str, default: int) -> int:
    """A whole-number query parameter, or a 400 naming it."""
    raw = request.query.get(key)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise BadRequest(f"The query parameter {key} must be a whole number, not {raw!r}.") from None


# -- /files names in URLs, shared by the file routes and the listings ----------


def site_url() -> str:
    """``scheme://host[:port]`` of this request, for absolute URLs in answers.
    What bottle's ``request.urlparts`` gives (forwarded headers first: waitress
    has removed the untrusted ones), without parsing the whole URL each time."""
    env = request.environ
    scheme = env.get("HTTP_X_FORWARDED_PROTO") or env.get("wsgi.url_scheme", "http")
    host = env.get("HTTP_X_FORWARDED_HOST") or env.get("HTTP_HOST")
    if not host:
        host, port = env.get("SERVER_NAME", "127.0.0.1"), env.get("SERVER_PORT")
        if port and port != ("80" if scheme == "http" else "443"):
            host += ":" + port
    return f"{scheme}://{host}"


def file_url(name: str, absolute: bool = True) -> str:
    path = "/files/" + quote(name, safe="/")
    return site_url() + path if absolute else path


def describe(info) -> dict:
    return {**info.to_dict(), "url": file_url(info.name)}


def folder_of(path: str) -> str:
    if path and not path.endswith("/"):
        raise BadRequest(f"POST uploads go to a folder URL ending in '/', not {path!r}; "
                         "use PUT to store one file under a name.")
    return validate_prefix(path)


def check_public(name: str, change: bool = False) -> str:
    """The server's own files are not a user's: reading one answers as if it
    were absent (404), storing or deleting one is refused (403)."""
    if name.startswith(PRIVATE_PREFIX):
        if change:
            raise Forbidden(f"Names under {PRIVATE_PREFIX} are kept for the server's own "
                            "data; choose another name.")
        raise FileNotFound(name)
    return name
