"""Small helpers shared by the routes: content negotiation and templates."""

from __future__ import annotations

from typing import Any

import bottle
from bottle import request

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
    return bottle.template(name, template_lookup=[str(VIEWS_DIR)], request=request, **values)
