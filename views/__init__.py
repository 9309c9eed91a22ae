"""Bottle templates and static assets (installed as ``fileserver.views``)."""

from pathlib import Path

VIEWS_DIR = Path(__file__).resolve().parent
STATIC_DIR = VIEWS_DIR / "static"
