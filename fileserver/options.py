"""Typed options: what a backend or a feature plugin declares for its config section.

A backend's ``OPTIONS`` (``[backend.NAME]``, ``FILESERVER_BACKEND_<NAME>_<KEY>``)
and a feature's ``options`` (``[plugin.NAME]``, ``FILESERVER_PLUGIN_<NAME>_<KEY>``)
map keys to ``Option``s; the core parses the raw text once, with the same
"from where" messages as its own keys. The parsers raise ``ValueError`` with
a message for people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True)
class Option:
    """One option: how to parse its text, its default (already parsed), and a line of help."""

    parse: Callable[[str], Any]
    default: Any = None
    help: str = ""


def parse_options(declared: Mapping[str, Option], raw: Mapping[str, Any], section: str,
                  sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``raw`` text values -> typed values, defaults filled in. Values that are
    not text (given by code, already typed) are taken as they are."""
    sources = sources or {}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        where = sources.get(unknown[0], "the configuration")
        raise ConfigError(f"{section} {unknown[0]}: unknown key (from {where}); known keys: "
                          f"{', '.join(declared) or 'none'}")
    parsed = {}
    for key, option in declared.items():
        if key not in raw or raw[key] is None:
            parsed[key] = option.default
            continue
        value = raw[key]
        if not isinstance(value, str):
            parsed[key] = value
            continue
        try:
            parsed[key] = option.parse(value)
        except ValueError as exc:
            message = str(exc)
            if message.startswith("invalid literal"):
                message = f"{value!r} is not a whole number"
            raise ConfigError(f"{section} {key}: {message} "
                              f"(from {sources.get(key, 'the configuration')})") from None
    return parsed


# -- parsers ---------------------------------------------------------------------------


def text(value: str) -> str:
    if not str(value).strip():
        raise ValueError("it is empty")
    return str(value).strip()


def path(value: str) -> str:
    return str(Path(text(value)).expanduser().resolve())


def on_off(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"{value!r} is not on/off (also true/false, yes/no)")


def size(value: str) -> int | None:
    """``"10M"`` -> 10485760. ``0``, ``none`` or ``unlimited`` mean no limit."""
    stripped = str(value).strip()
    if stripped.lower() in ("0", "none", "unlimited"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", stripped, re.IGNORECASE)
    if not match:
        raise ValueError(f"{value!r} is not a size; use bytes or a suffix like 10M or 2G")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def whole(low: int, high: int, what: str = "number") -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"{value!r} is not a {what} ({low}-{high})")
        return number
    return parse


def seconds(low: float = 0, high: float = 86400) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number of seconds") from None
        if not low < number <= high:
            raise ValueError(f"{value!r} is not a time between {low:g} and {high:g} seconds")
        return number
    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        lowered = str(value).strip().lower()
        if lowered not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return lowered
    return parse


def url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        from .config import mask_password

        stripped = text(value)
        parts = urlsplit(stripped)
        if parts.scheme not in schemes or not (parts.hostname or parts.netloc):
            raise ValueError(f"{mask_password(stripped)!r} is not a "
                             f"{' or '.join(s + '://' for s in schemes)} URL")
        return stripped
    return parse
