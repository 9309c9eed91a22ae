"""A plugin-based HTTP file server: Bottle + waitress, stores chosen by config."""

from .app import create_app
from .config import Settings, load_settings

__all__ = ["create_app", "Settings", "load_settings"]
__version__ = "0.1.0"
