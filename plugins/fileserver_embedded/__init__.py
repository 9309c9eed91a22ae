"""The embedded default backend: files on local disk, documents in SQLite.

Standard library only. ``files.py`` is the files contract (``Store``),
``documents.py`` the documents contract.
"""

from .files import EmbeddedStore

__all__ = ["EmbeddedStore"]
