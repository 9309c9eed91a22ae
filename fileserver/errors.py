"""The one error vocabulary: every class carries its HTTP status.

Backends translate their driver's errors into these at their boundary;
routes, feature plugins and jobs raise them (never ``bottle.HTTPError``);
``fileserver.app`` turns them into JSON or HTML answers in one place, for
routes and hooks alike, and a job records ``status`` as its synchronous
request would have answered. Each also subclasses the matching built-in
where there is one, so plain Python code can catch ``FileNotFoundError``
or ``ValueError`` without knowing about this module.
"""

from __future__ import annotations


class Error(Exception):
    """Something a request cannot get; the message is meant for people.

    ``headers`` go out with the answer (``Retry-After``, ``Allow`` ...).
    """

    status = 500

    def __init__(self, message: str = "", **headers: str):
        super().__init__(message)
        self.headers = headers


class BadRequest(Error, ValueError):
    status = 400


class Unauthorized(Error):
    """No or wrong credentials (401; ``WWW-Authenticate`` where a client should ask)."""

    status = 401


class Forbidden(Error):
    status = 403


class NotFound(Error, LookupError):
    status = 404


class MethodNotAllowed(Error):
    status = 405


class Conflict(Error):
    """Another writer got there first (a taken id, a changed version), or the
    request cannot be done in the present state (an empty tile library)."""

    status = 409


class RequestTimeout(Error):
    """The client stopped sending the request's body."""
    status = 408


class TooLarge(Error):
    """Over a configured size limit; nothing was stored."""

    status = 413


class UnsupportedMediaType(Error):
    status = 415


class RangeNotSatisfiable(Error):
    status = 416


class TooManyRequests(Error):
    status = 429


class BadGateway(Error):
    """An upstream (a URL being imported) failed."""

    status = 502


class GatewayTimeout(Error):
    status = 504


# -- the storage seam ------------------------------------------------------------------


class StoreError(Error):
    """Something went wrong in a store."""


class FileNotFound(StoreError, NotFound, FileNotFoundError):
    status = 404


class InvalidName(StoreError, BadRequest):
    status = 400


class IncompleteUpload(StoreError, BadRequest):
    """The body ended early or could not be read; nothing was stored."""

    status = 400


class BackendUnavailable(StoreError, ConnectionError):
    """The database is away or kept changing under us; try again."""

    status = 503


class InsufficientStorage(StoreError):
    """The disk or the database's quota is full; nothing was stored."""

    status = 507


class NotSetUp(StoreError):
    """The database lacks something ``fileserver init-db`` installs (a view, an index)."""

    status = 503


class ConfigError(StoreError, ValueError):
    """Bad configuration; raised at startup, before anything is served."""
