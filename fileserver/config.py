"""Settings: defaults < INI file < FILESERVER_* environment < command-line flags.

The INI file has a ``[fileserver]`` section with the keys below and one
``[backend.NAME]`` section per backend for that backend's own options.
Every bad value fails at startup with a ``ConfigError`` naming the key and
where the value came from.
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError

DEFAULT_MAX_UPLOAD = 10 * 1024**3
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int | None:
    """``"10M"`` -> 10485760. ``0``, ``none`` or ``unlimited`` mean no limit."""
    value = str(text).strip()
    if value.lower() in ("0", "none", "unlimited"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", value, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a size; use bytes or a suffix like 10M or 2G")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def mask_password(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs.

    Plain string work rather than urlsplit, so multi-host URIs
    (``mongodb://u:p@h1:1,h2:2/``) are masked too.
    """
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    return f"{scheme}{sep}{netloc}{slash}{tail}"


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    return port


def _threads(text: str) -> int:
    threads = int(text)
    if not 1 <= threads <= 256:
        raise ValueError(f"{text!r} is not a thread count (1-256)")
    return threads


def _text(text: str) -> str:
    if not str(text).strip():
        raise ValueError("it is empty")
    return str(text).strip()


def _path(text: str) -> str:
    return str(Path(_text(text)).expanduser().resolve())


def _anonymous(text: str) -> str:
    value = str(text).strip().lower()
    if value not in ("none", "read", "write"):
        raise ValueError(f"{text!r} is not one of none, read, write")
    return value


def _on_off(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"{text!r} is not on/off (also true/false, yes/no)")


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds <= 86400:
        raise ValueError(f"{text!r} is not a time between 0 and 86400 seconds")
    return seconds


def _host_patterns(text: str) -> tuple[str, ...]:
    """``"a.org, *.b.org"`` -> ("a.org", "*.b.org"); ``*`` alone allows any host."""
    hosts = tuple(h.lower().rstrip(".") for h in re.split(r"[\s,]+", str(text)) if h)
    for host in hosts:
        if not re.fullmatch(r"\*|(\*\.)?[a-z0-9_.:-]+", host) or "**" in host:
            raise ValueError(f"{host!r} is not a host name or *.domain pattern "
                             "(no scheme, port or path)")
    return hosts


# key -> parser; the parsers raise ValueError with a message for people.
KEYS: dict[str, Callable[[str], Any]] = {
    "host": _text,
    "port": _port,
    "backend": _text,
    "data_dir": _path,
    "max_upload_size": parse_size,
    "threads": _threads,
    "anonymous": _anonymous,
    "trusted_proxy": _text,
    # POST /files/ url=...: the server fetches a URL (fileserver/fetch.py)
    "url_import": _on_off,
    "url_import_hosts": _host_patterns,
    "url_import_private": _on_off,
    "url_import_max_size": parse_size,
    "url_import_timeout": _seconds,
}


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    backend: str = "embedded"
    data_dir: str = field(default_factory=lambda: _path("fileserver-data"))
    max_upload_size: int | None = DEFAULT_MAX_UPLOAD
    threads: int = 8
    #: what clients without credentials may do: none, read or write; unset
    #: means write on loopback while no user exists, else none (auth.py)
    anonymous: str | None = None
    #: the address of a reverse proxy whose X-Forwarded-* headers are believed
    trusted_proxy: str | None = None
    url_import: bool = False
    url_import_hosts: tuple[str, ...] = ()
    url_import_private: bool = False
    url_import_max_size: int | None = None  # None: max_upload_size alone limits
    url_import_timeout: float = 30.0
    #: ``[backend.NAME]`` sections: name -> {option: value}
    backend_options: dict[str, dict[str, str]] = field(default_factory=dict)

    def options_for(self, name: str | None = None) -> dict[str, str]:
        return dict(self.backend_options.get(name or self.backend, {}))


def _apply(settings: Settings, key: str, raw: Any, source: str) -> None:
    try:
        value = KEYS[key](raw)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("invalid literal"):
            message = f"{raw!r} is not a whole number"
        raise ConfigError(f"{key}: {message} (from {source})") from None
    setattr(settings, key, value)


def read_ini(path: str | os.PathLike) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"config: {path} is not a valid INI file: {exc}") from None
    return parser


def load_settings(config_file: str | None = None, *, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build settings from the file, then the environment, then ``overrides``."""
    env = os.environ if env is None else env
    settings = Settings()
    path = config_file or env.get("FILESERVER_CONFIG")
    if path:
        parser = read_ini(path)
        # Relative data_dir in a file is relative to that file, not to the cwd.
        base = Path(path).resolve().parent
        for section in parser.sections():
            if section.startswith("backend."):
                settings.backend_options[section[len("backend."):]] = dict(parser[section])
            elif section != "fileserver":
                raise ConfigError(f"config: unknown section [{section}] in {path}; "
                                  "use [fileserver] and [backend.NAME]")
        if parser.has_section("fileserver"):
            for key, raw in parser["fileserver"].items():
                if key not in KEYS:
                    raise ConfigError(f"{key}: unknown key in [fileserver] of {path}; "
                                      f"known keys: {', '.join(KEYS)}")
                if key == "data_dir":
                    raw = str(base / Path(raw).expanduser())
                _apply(settings, key, raw, path)
    for key in KEYS:
        name = f"FILESERVER_{key.upper()}"
        if env.get(name):
            _apply(settings, key, env[name], name)
    for key, raw in (overrides or {}).items():
        if raw is not None:
            _apply(settings, key, raw, f"--{key.replace('_', '-')}")
    return settings
