"""Storage plugins shipped with fileserver (installed as ``fileserver_plugins``).

Each backend is a ``fileserver.store.Store`` subclass registered under the
``fileserver.backends`` entry-point group in ``setup.cfg``.
"""
