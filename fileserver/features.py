"""The feature-plugin interface: everything a feature plugin declares, in one place.

A feature plugin is a ``Feature`` instance named by an entry point in the
group ``fileserver.plugins`` (``mosaic = fileserver_mosaic:plugin``). The core
reads its declarations and calls its hooks; a feature needs nothing else of
the core's wiring, and builds its state only on the two contracts (``Store``
for files, ``Documents`` for everything else), so it works on every backend.

The hooks, one line each (``HOOKS``; a test checks every one is documented
here and exercised):
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .documents import CollectionSpec
from .options import Option, parse_options

if TYPE_CHECKING:
    from .config import Settings
    from .documents import Documents
    from .store import Store

log = logging.getLogger("fileserver")

GROUP = "fileserver.plugins"

#: hook -> what it is for (the module docstring lists these too)
HOOKS: dict[str, str] = {
    "name": "the plugin's name: its config section is [plugin.NAME]",
    "collections": "documents collections it keeps, with the body fields they are searched by",
    "options": "its typed options: [plugin.NAME] in the INI, FILESERVER_PLUGIN_<NAME>_<KEY>",
    "nav": "(url, label) links for every page's header",
    "openapi": "its part of /openapi.json: {'paths': ..., 'schemas': ...}",
    "routes": "add its routes to the one app (app.route; never a mounted sub-app)",
    "resumable": "where it takes resumable uploads, for the upload page: "
                 "{'endpoint': path, 'chunk_size': bytes}, or None",
    "init_db": "set-up beyond its collections for `fileserver init-db`; lines for people",
    "startup": "once the app is built, before serving: start background work",
    "shutdown": "on Ctrl-C, SIGTERM or app close: stop background work cleanly",
}
__doc__ += "".join(f"\n- ``{hook}``: {text}" for hook, text in HOOKS.items()) + "\n"


@dataclass
class Context:
    """What a feature's hooks get: the settings, the store, its documents and
    its own parsed options (``[plugin.NAME]``)."""

    settings: "Settings"
    store: "Store"
    documents: "Documents"
    options: dict[str, Any] = field(default_factory=dict)
    #: anything the feature keeps between its hooks (a job runner, an index)
    state: dict[str, Any] = field(default_factory=dict)


class Feature:
    """Subclass, set the declarations, override the hooks you need."""

    name: str = ""
    collections: Sequence[CollectionSpec] = ()
    options: Mapping[str, Option] = {}
    nav: Sequence[tuple[str, str]] = ()

    def openapi(self) -> dict[str, Any] | None:
        return None

    def routes(self, app: Any, context: Context) -> None:
        pass

    def resumable(self, context: Context) -> dict[str, Any] | None:
        return None

    def init_db(self, context: Context) -> list[str]:
        return []

    def startup(self, context: Context) -> None:
        pass

    def shutdown(self, context: Context) -> None:
        pass


def installed_features() -> list[Feature]:
    """Every installed feature plugin, in name order."""
    found = []
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        feature = entry.load()
        if not isinstance(feature, Feature):
            raise TypeError(f"entry point {entry.value} in {GROUP} is not a fileserver "
                            "Feature instance")
        found.append(feature)
    return found


def core_collections() -> list[CollectionSpec]:
    """The collections the core itself keeps (accounts, login throttling)."""
    from .accounts import COLLECTION as ACCOUNTS
    from .throttle import COLLECTION as THROTTLE

    return [ACCOUNTS, THROTTLE]


def all_collections(features: Sequence[Feature] | None = None) -> list[CollectionSpec]:
    """What ``init-db`` sets up: the core's collections and every feature's."""
    features = installed_features() if features is None else features
    return core_collections() + [spec for f in features for spec in f.collections]


def context_for(feature: Feature, settings: "Settings", store: "Store") -> Context:
    """A feature's context, with its ``[plugin.NAME]`` options parsed (a
    ``ConfigError`` naming the key and its source when one is bad)."""
    section = f"plugin.{feature.name}"
    options = parse_options(feature.options, settings.section(section), section,
                            settings.sources_of(section))
    documents = store.documents()
    for spec in feature.collections:
        documents.declare(spec.name, spec.indexed)
    return Context(settings, store, documents, options)


def init_db_lines(settings: "Settings", store: "Store",
                  features: Sequence[Feature] | None = None) -> list[str]:
    """Run the ``init_db`` hook of every feature that has one, on ``store``
    (already set up by the backend's own init-db); lines for people."""
    lines = []
    for feature in installed_features() if features is None else features:
        if type(feature).init_db is not Feature.init_db:
            context = context_for(feature, settings, store)
            lines += [f"{feature.name}: {line}" for line in feature.init_db(context)]
    return lines


class Running:
    """The features of one app, started; ``close`` shuts them down once."""

    def __init__(self, pairs: list[tuple[Feature, Context]]):
        self.pairs = pairs
        self._closed = False

    def context(self, name: str) -> Context:
        """The running context of the feature called ``name``."""
        return next(context for feature, context in self.pairs if feature.name == name)

    @property
    def nav(self) -> list[tuple[str, str]]:
        return [link for feature, _ in self.pairs for link in feature.nav]

    @property
    def resumable(self) -> dict[str, Any] | None:
        """The first feature's resumable-upload endpoint, if one has it."""
        return next((found for feature, context in self.pairs
                     if (found := feature.resumable(context))), None)

    def openapi_parts(self) -> list[dict[str, Any]]:
        return [part for feature, _ in self.pairs if (part := feature.openapi())]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for feature, context in reversed(self.pairs):
            try:
                feature.shutdown(context)
            except Exception:  # one feature's failure must not keep the others running
                log.exception("shutting down the %s plugin failed", feature.name)


def start_features(app: Any, settings: "Settings", store: "Store",
                   features: Sequence[Feature] | None = None) -> Running:
    """Add every feature's routes to ``app`` and start it."""
    pairs = []
    for feature in installed_features() if features is None else features:
        context = context_for(feature, settings, store)
        feature.routes(app, context)
        pairs.append((feature, context))
    running = Running(pairs)
    for feature, context in pairs:
        feature.startup(context)
    return running
