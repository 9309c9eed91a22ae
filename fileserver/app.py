"""The app factory: ``create_app(settings)`` returns a Bottle WSGI app.

No global default app: every call builds its own app around its own store,
so tests can run as many as they like.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from typing import Any, Callable

import bottle
from bottle import Bottle, HTTPError, request, response

from . import files, login, openapi
from .accounts import Accounts
from .auth import Auth
from .backends import open_store
from .config import Settings
from .errors import Error
from .features import Running, start_features
from .listing import RESUMABLE
from .serving import send_asset
from .store import Store
from .throttle import Throttle
from .views import STATIC_DIR
from .web import render, wants_html

log = logging.getLogger("fileserver")


def to_http(exc: Error) -> HTTPError:
    """The one place an ``Error`` becomes an HTTP answer (for routes, through
    ``StorePlugin``, and for hooks, through ``guarded``): its status, headers
    and message. Unexpected failures (plain 500s) are logged with their
    traceback; a database away (503) or an upstream failing (502, 504), one line."""
    if exc.status == 500:
        log.exception("error on %s %s", request.method, request.path)
    elif exc.status >= 500:
        log.warning("%s %s: %s", request.method, request.path, exc)
    error = HTTPError(exc.status, str(exc), **exc.headers)
    error.exception = exc
    return error


def guarded(hook: Callable[..., Any]) -> Callable[..., Any]:
    """A hook whose ``Error``s become answers like a route's."""
    @functools.wraps(hook)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except Error as exc:
            raise to_http(exc) from exc
    return run


class App(Bottle):
    """Bottle whose request hooks, whoever adds them, go through ``guarded``."""

    def add_hook(self, name: str, func: Callable) -> None:
        super().add_hook(name, guarded(func) if name.endswith("_request") else func)


class StorePlugin:
    """Hands the active store to callbacks that take a ``store`` argument and
    turns errors into HTTP answers (``to_http``)."""

    name = "store"
    api = 2

    def __init__(self, store: Store):
        self.store = store
        self.features: Running | None = None

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        takes_store = "store" in inspect.signature(route.callback).parameters

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if takes_store:
                kwargs["store"] = self.store
            try:
                return callback(*args, **kwargs)
            except Error as exc:
                raise to_http(exc) from exc

        return wrapper

    def close(self) -> None:
        if self.features is not None:
            self.features.close()
        self.store.close()


def render_error(error: HTTPError) -> str:
    status = error.status_code
    message = error.body if isinstance(error.body, str) and error.body else error.status_line
    if status >= 500 and error.exception is not None and not isinstance(error.exception, Error):
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
    app = App()
    app.config["catchall"] = catchall
    app.config["fileserver.settings"] = settings
    app.config["fileserver.store"] = store
    app.default_error_handler = render_error
    plugin = StorePlugin(store)
    app.install(plugin)
    try:
        documents = store.documents()
        auth = Auth(settings, Accounts(documents), Throttle(documents))
        auth.check_startup()
    except BaseException:
        store.close()
        raise
    app.config["fileserver.auth"] = auth

    @app.get("/static/<path:path>")
    def static(path: str):
        return send_asset(STATIC_DIR, path)

    login.add_routes(app)
    files.add_routes(app)  # its same-origin check runs first: no password work for forgeries
    app.add_hook("before_request", auth.before_request)
    try:
        running = start_features(app, settings, store)
    except BaseException:
        store.close()
        raise
    plugin.features = running  # shut down before the store closes
    app.config["fileserver.features"] = running
    app.config["fileserver.nav"] = tuple(running.nav)  # views/base.tpl: every page's header
    app.config[RESUMABLE] = running.resumable  # the listing's upload form
    app.config[openapi.PLUGIN_PARTS] = tuple(running.openapi_parts())
    openapi.add_route(app)
    return app
