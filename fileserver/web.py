"""Small helpers shared by the routes: content negotiation and templates."""

from __future__ import annotations

import json
from typing import Any

import bottle
from bottle import request, response

from .errors import BadRequest, MethodNotAllowed
from .views import VIEWS_DIR


def wants_html() -> bool:
    """Browsers get HTML; curl and API clients (no text/html in Accept) get JSON."""
    fmt = request.query.get("format")
    if fmt in ("json", "html"):
        return fmt == "html"
    return "text/html" in request.get_header("Accept", "")


def render(name: str, **values: Any) -> str:
    """Render ``views/<name>.tpl``; the lookup path is absolute, so installed
    copies find their templates from any working directory."""
    try:  # who is logged in, for the header; nobody outside a request (waitress's errors)
        env, auth = request.environ, request.app.config.get("fileserver.auth")
    except (RuntimeError, KeyError, AttributeError):
        env, auth = {}, None
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
