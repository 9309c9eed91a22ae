"""The ``fileserver`` command: ``serve``, ``init-db``, ``migrate`` and ``backends``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .backends import available_backends, load_backend
from .config import load_settings
from .errors import ConfigError, StoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fileserver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", help="INI file (default: $FILESERVER_CONFIG)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--backend", help="storage backend name (default embedded)")
    serve.add_argument("--data-dir", help="where the embedded store keeps data")
    serve.add_argument("--max-upload-size", help="largest request body, e.g. 500M, 2G; 0 = none")
    serve.add_argument("--threads", help="worker threads (default 8)")
    commands.add_parser("backends", help="list the installed storage backends")
    move = commands.add_parser("migrate", help="copy every file into the store another "
                               "config file names (resumable)")
    move.add_argument("--config", help="the source: INI file (default: $FILESERVER_CONFIG)")
    move.add_argument("--to-config", required=True, help="INI file naming the destination")
    init = commands.add_parser("init-db", help="create the backend's database, indexes "
                               "and permissions (safe to run twice)")
    init.add_argument("--config", help="INI file (default: $FILESERVER_CONFIG)")
    init.add_argument("--backend", help="storage backend name (default: from the config)")
    init.add_argument("--data-dir", help="where the embedded store keeps data")
    init.add_argument("--admin-url", help="credentials allowed to create databases, "
                      "e.g. http://admin:secret@127.0.0.1:5984/ (default: the configured url)")
    return parser


def _stop(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


def serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .server import limit_malloc_arenas, make_server, server_url

    limit_malloc_arenas()  # before any thread (drivers start theirs in create_app)
    overrides = {key: getattr(args, key) for key in
                 ("host", "port", "backend", "data_dir", "max_upload_size", "threads")}
    settings = load_settings(args.config, overrides=overrides)
    app = create_app(settings)
    try:
        server = make_server(app, settings)
    except OSError as exc:
        app.close()
        raise ConfigError(f"host/port: cannot listen on {settings.host}:{settings.port}: "
                          f"{exc.strerror}") from None
    store = app.config["fileserver.store"]
    print(f"fileserver: serving {server_url(server)} with the {settings.backend} backend, "
          f"data in {store.location} (Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        app.close()
    print("fileserver: stopped", flush=True)
    return 0


def init_db(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, overrides={"backend": args.backend,
                                                     "data_dir": args.data_dir})
    cls = load_backend(settings.backend)
    lines = cls.init_db(settings, settings.options_for(settings.backend), admin_url=args.admin_url)
    for line in lines or [f"{settings.backend}: nothing to set up"]:
        print(f"fileserver: {line}")
    return 0


def migrate(args: argparse.Namespace) -> int:
    from .backends import open_store
    from .migrate import migrate as run

    source_settings = load_settings(args.config)
    target_settings = load_settings(args.to_config, env={})
    source = open_store(source_settings)
    try:
        target = open_store(target_settings)
        try:
            print(f"fileserver: migrating {source_settings.backend} ({source.location}) -> "
                  f"{target_settings.backend} ({target.location})", flush=True)
            report = run(source, target)
        finally:
            target.close()
    finally:
        source.close()
    for name, error in report.failed:
        print(f"fileserver: failed: {name}: {error}", file=sys.stderr)
    print(f"fileserver: {report.copied} copied, {report.skipped} already there, "
          f"{len(report.failed)} failed", flush=True)
    return 1 if report.failed else 0


def list_backends() -> int:
    for name, entry in sorted(available_backends().items()):
        try:
            load_backend(name)
            state = "ok"
        except ConfigError as exc:
            state = str(exc)
        print(f"{name:12} {entry.value:45} {state}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # "Task queue depth is N" on every busy moment says nothing actionable.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        commands = {"serve": serve, "init-db": init_db, "migrate": migrate,
                    "backends": lambda _: list_backends()}
        return commands[args.command](args)
    except StoreError as exc:
        print(f"fileserver: error: {exc}", file=sys.stderr)
        return 2
