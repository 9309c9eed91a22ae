"""Finding storage backends: the ``fileserver.backends`` entry-point group.

Any installed distribution can add a backend by declaring an entry point in
that group (``name = package.module:StoreClass``); the class is imported only
when chosen, so a backend whose driver is missing does not break the others.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from .config import Settings
from .errors import ConfigError, StoreError
from .store import Store

GROUP = "fileserver.backends"

#: pip extras that bring a backend's driver, for the install hint.
EXTRAS: dict[str, str] = {"couchdb": "couchdb", "gridfs": "gridfs"}


def available_backends() -> dict[str, EntryPoint]:
    """name -> entry point, for every installed backend."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_backend(name: str) -> type[Store]:
    found = available_backends()
    if name not in found:
        names = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"backend: unknown backend {name!r}; installed backends: {names}")
    try:
        cls = found[name].load()
    except ImportError as exc:
        extra = EXTRAS.get(name, name)
        raise ConfigError(f"backend: {name!r} needs a driver that is not installed ({exc}); "
                          f"install it with: pip install 'fileserver[{extra}]'") from None
    if not (isinstance(cls, type) and issubclass(cls, Store)):
        raise ConfigError(f"backend: entry point {found[name].value} is not a Store subclass")
    return cls


def open_store(settings: Settings) -> Store:
    """The configured backend, connected; any failure is a ``ConfigError``-like StoreError."""
    cls = load_backend(settings.backend)
    try:
        return cls.from_config(settings, settings.options_for(settings.backend))
    except StoreError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"backend {settings.backend!r}: {exc}") from exc
