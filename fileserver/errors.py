"""The one error hierarchy of the storage seam.

Backends translate their driver's errors into these at their boundary; the
web layer (``fileserver.app``) turns them into HTTP statuses in one place.
Each also subclasses the matching built-in so plain Python code can catch
``FileNotFoundError`` or ``ValueError`` without knowing about stores.
"""


class StoreError(Exception):
    """Something went wrong in a store; the message is meant for people."""

    status = 500


class FileNotFound(StoreError, FileNotFoundError):
    status = 404


class InvalidName(StoreError, ValueError):
    status = 400


class TooLarge(StoreError):
    """The upload exceeds the configured size limit; nothing was stored."""

    status = 413


class IncompleteUpload(StoreError):
    """The body ended early or could not be read; nothing was stored."""

    status = 400


class BackendUnavailable(StoreError, ConnectionError):
    status = 503


class ConfigError(StoreError, ValueError):
    """Bad configuration; raised at startup, before anything is served."""
