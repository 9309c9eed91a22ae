"""The app factory: ``create_app(settings)`` returns a Bottle WSGI app.

No global default app: every call builds its own app around its own store,
so tests can run as many as they like.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any, Callable

import bottle
from bottle import Bottle, HTTPError, request, response, static_file

from . import files, login, openapi
from .accounts import Accounts
from .auth import Auth
from .backends import install_features, open_store
from .config import Settings
from .errors import BackendUnavailable, StoreError
from .store import Store
from .views import STATIC_DIR
from .web import render, wants_html

log = logging.getLogger("fileserver")


class StorePlugin:
    """Hands the active store to callbacks that take a ``store`` argument and
    turns store errors into HTTP errors: the one place that mapping lives."""

    name = "store"
    api = 2

    def __init__(self, store: Store):
        self.store = store

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        takes_store = "store" in inspect.signature(route.callback).parameters

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if takes_store:
                kwargs["store"] = self.store
            try:
                return callback(*args, **kwargs)
            except StoreError as exc:
                if isinstance(exc, BackendUnavailable):  # one line, not a traceback per request
                    log.warning("%s %s: %s", request.method, request.path, exc)
                elif exc.status >= 500:
                    log.exception("store error on %s %s", request.method, request.path)
                raise HTTPError(exc.status, str(exc)) from exc

        return wrapper

    def close(self) -> None:
        self.store.close()


def render_error(error: HTTPError) -> str:
    status = error.status_code
    message = error.body if isinstance(error.body, str) and error.body else error.status_line
    if status >= 500 and error.exception is not None and not isinstance(error.exception, StoreError):
        log.error("unhandled error on %s %s", request.method, request.path,
                  exc_info=(type(error.exception), error.exception, error.exception.__traceback__))
        message = "Internal server error; the server log has the details."
    if wants_html():
        response.content_type = "text/html; charset=utf-8"
        return render("error", status=status, message=message, reason=error.status_line)
    response.content_type = "application/json"
    return json.dumps({"error": message, "status": status})


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               catchall: bool = True) -> Bottle:
    """Build the app; ``store`` defaults to the backend the settings name."""
    settings = settings or Settings()
    store = store if store is not None else open_store(settings)
    app = Bottle()
    app.config["catchall"] = catchall
    app.config["fileserver.settings"] = settings
    app.config["fileserver.store"] = store
    app.default_error_handler = render_error
    app.install(StorePlugin(store))
    records = store.capability("records")
    auth = Auth(settings, Accounts(records) if records is not None else None)
    try:
        auth.check_startup()
    except BaseException:
        store.close()
        raise
    app.config["fileserver.auth"] = auth

    @app.get("/static/<path:path>")
    def static(path: str):
        return static_file(path, root=str(STATIC_DIR))

    login.add_routes(app)
    files.add_routes(app)  # its same-origin check runs first: no password work for forgeries
    app.add_hook("before_request", auth.before_request)
    install_features(app)
    openapi.add_route(app)
    return app
