"""Settings: defaults < INI file < FILESERVER_* environment < command-line flags.

The INI file has a ``[fileserver]`` section with the keys below, one
``[backend.NAME]`` section per backend and one ``[plugin.NAME]`` per feature
plugin for their own options (typed by what they declare, see
``options.py``), also settable as ``FILESERVER_BACKEND_<NAME>_<KEY>`` and
``FILESERVER_PLUGIN_<NAME>_<KEY>``. Every bad value fails at startup with a
``ConfigError`` naming the key and where the value came from.
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .options import choice, on_off, seconds, size, whole
from .options import path as parse_path
from .options import text as parse_text

DEFAULT_MAX_UPLOAD = 10 * 1024**3
parse_size = size
ENV_SECTIONS = {"FILESERVER_BACKEND_": "backend.", "FILESERVER_PLUGIN_": "plugin."}


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


def _access_log(value: str) -> str:
    """``off``, ``stdout`` or the path of a file to append to."""
    text = parse_text(value)
    return text.lower() if text.lower() in ("off", "stdout") else parse_path(text)


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
    "host": parse_text,
    "port": whole(0, 65535, "port number"),
    "backend": parse_text,
    "data_dir": parse_path,
    "max_upload_size": size,
    "threads": whole(1, 256, "thread count"),
    "anonymous": choice("none", "read", "write"),
    "trusted_proxy": parse_text,
    "access_log": _access_log,
    "body_timeout": seconds(),
    # POST /files/ url=...: the server fetches a URL (fileserver/fetch.py)
    "url_import": on_off,
    "url_import_hosts": _host_patterns,
    "url_import_private": on_off,
    "url_import_max_size": size,
    "url_import_timeout": seconds(),
}


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    backend: str = "embedded"
    data_dir: str = field(default_factory=lambda: parse_path("fileserver-data"))
    max_upload_size: int | None = DEFAULT_MAX_UPLOAD
    threads: int = 8
    #: what clients without credentials may do: none, read or write; unset
    #: means write on loopback while no user exists, else none (auth.py)
    anonymous: str | None = None
    #: the address of a reverse proxy whose X-Forwarded-* headers are believed
    trusted_proxy: str | None = None
    #: one line per request: off, stdout or a file's path
    access_log: str = "stdout"
    #: seconds an upload's body may stop arriving before it fails (408)
    body_timeout: float = 60.0
    url_import: bool = False
    url_import_hosts: tuple[str, ...] = ()
    url_import_private: bool = False
    url_import_max_size: int | None = None  # None: max_upload_size alone limits
    url_import_timeout: float = 30.0
    #: ``[backend.NAME]`` sections: name -> {option: raw value}
    backend_options: dict[str, dict[str, str]] = field(default_factory=dict)
    #: ``[plugin.NAME]`` sections: name -> {option: raw value}
    plugin_options: dict[str, dict[str, str]] = field(default_factory=dict)
    #: section -> option -> where its value came from (a file, an environment variable)
    option_sources: dict[str, dict[str, str]] = field(default_factory=dict)

    def options_for(self, name: str | None = None) -> dict[str, str]:
        """The raw ``[backend.NAME]`` options (typed by ``fileserver.backends``)."""
        return dict(self.backend_options.get(name or self.backend, {}))

    def section(self, section: str) -> dict[str, str]:
        """Raw options of ``backend.NAME`` or ``plugin.NAME``."""
        kind, _, name = section.partition(".")
        table = self.backend_options if kind == "backend" else self.plugin_options
        return dict(table.get(name, {}))

    def sources_of(self, section: str) -> dict[str, str]:
        return dict(self.option_sources.get(section, {}))

    def set_option(self, section: str, key: str, raw: str, source: str) -> None:
        kind, _, name = section.partition(".")
        table = self.backend_options if kind == "backend" else self.plugin_options
        table.setdefault(name, {})[key] = raw
        self.option_sources.setdefault(section, {})[key] = source


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
            if section.startswith(("backend.", "plugin.")) and section.partition(".")[2]:
                for key, raw in parser[section].items():
                    settings.set_option(section, key, raw, path)
            elif section != "fileserver":
                raise ConfigError(f"config: unknown section [{section}] in {path}; "
                                  "use [fileserver], [backend.NAME] and [plugin.NAME]")
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
    for name, raw in sorted(env.items()):
        for prefix, kind in ENV_SECTIONS.items():
            # FILESERVER_BACKEND_COUCHDB_URL -> [backend.couchdb] url
            section, _, key = name[len(prefix):].partition("_")
            if name.startswith(prefix) and section and key and raw:
                settings.set_option(kind + section.lower(), key.lower(), raw, name)
    for key, raw in (overrides or {}).items():
        if raw is not None:
            _apply(settings, key, raw, f"--{key.replace('_', '-')}")
    return settings
