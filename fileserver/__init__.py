"""A plugin-based HTTP file server: Bottle + waitress, stores chosen by config.

The contracts (``fileserver.store``, ``fileserver.documents``) and the errors
import without bottle or the app; ``create_app`` is loaded on first use.
"""

__all__ = ["create_app", "Settings", "load_settings"]
__version__ = "0.3.0"


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("Settings", "load_settings"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'fileserver' has no attribute {name!r}")
