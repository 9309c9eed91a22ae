"""The MongoDB backend: files in a GridFS bucket, documents in collections beside it.

``files.py`` is the files contract (``Store``), ``documents.py`` the
documents contract; both share one MongoClient and error boundary.
"""

from .files import GridFSStore

__all__ = ["GridFSStore"]
