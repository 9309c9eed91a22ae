"""The CouchDB backend: files as attachments, documents beside them in one database.

``files.py`` is the files contract (``Store``), ``documents.py`` the
documents contract; both share one connection pool and error boundary.
"""

from .files import CouchDBStore

__all__ = ["CouchDBStore"]
