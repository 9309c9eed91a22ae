"""The ``fileserver`` command: ``serve``, ``init-db``, ``migrate``, ``user`` and ``backends``."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys

from .accounts import ROLES, AccountError
from .backends import available_backends, load_backend
from .config import load_settings
from .errors import ConfigError, Error

#: the options that choose a store, in the order a suggested command repeats them
STORE_FLAGS = (("--config", "config"), ("--backend", "backend"), ("--data-dir", "data_dir"))
#: user actions that change existing accounts or read them: they need an existing store
NEEDS_STORE = ("list", "passwd", "token", "remove")


class NoStore(Exception):
    """The store a command needs does not exist; nothing was created (exit status 1)."""


def _store_options(what: str = "the store") -> argparse.ArgumentParser:
    """--config, --backend and --data-dir, for every command that opens a store.
    SUPPRESS: given at any level (``user --config X add`` or ``user add --config X``),
    a value is kept; an inner parser's default never overwrites an outer value."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", default=argparse.SUPPRESS,
                         help=f"INI file naming {what} (default: $FILESERVER_CONFIG)")
    options.add_argument("--backend", default=argparse.SUPPRESS,
                         help="storage backend name (default: from the config, else embedded)")
    options.add_argument("--data-dir", default=argparse.SUPPRESS,
                         help="where the embedded store keeps data (default ./fileserver-data)")
    return options


def _settings(args: argparse.Namespace, **overrides):
    """Settings from the command's --config, --backend, --data-dir (and ``overrides``)."""
    return load_settings(getattr(args, "config", None), overrides={
        "backend": getattr(args, "backend", None), "data_dir": getattr(args, "data_dir", None),
        **overrides})


def _store_args(args: argparse.Namespace) -> str:
    """The operator's own --config/--backend/--data-dir, quoted, so that a command
    we suggest reaches the same store (`` --data-dir 'my data'``; "" for none)."""
    return "".join(f" {flag} {shlex.quote(getattr(args, dest))}"
                   for flag, dest in STORE_FLAGS if getattr(args, dest, None) is not None)


def _require_store(args: argparse.Namespace, settings) -> None:
    """Refuse (``NoStore``) a store that does not exist, before anything opens
    it: opening makes an empty one (a data directory, a MongoDB database)."""
    cls = load_backend(settings.backend)
    why = cls.missing(settings, settings.options_for(settings.backend))
    if why:
        raise NoStore(f"no {settings.backend} store: {why}; nothing was created. "
                      "Point at yours with --data-dir DIR, --config FILE or --backend NAME, "
                      f"or make one with `fileserver init-db{_store_args(args)}`.")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="fileserver", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fileserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    store = _store_options()
    serve = commands.add_parser("serve", help="run the HTTP server", parents=[store])
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--max-upload-size", help="largest request body, e.g. 500M, 2G; 0 = none")
    serve.add_argument("--threads", help="worker threads (default 8)")
    commands.add_parser("backends", help="list the installed storage backends")
    move = commands.add_parser("migrate", help="copy every file and document into the store "
                               "another config file names (resumable)",
                               parents=[_store_options("the source")])
    move.add_argument("--to-config", required=True, help="INI file naming the destination")
    init = commands.add_parser("init-db", help="create the backend's database, indexes "
                               "and permissions (safe to run twice)", parents=[store])
    init.add_argument("--admin-url", help="credentials allowed to create databases, "
                      "e.g. http://admin:secret@127.0.0.1:5984/ (default: the configured url)")
    user = commands.add_parser("user", help="manage accounts (kept in the backend)",
                               parents=[store])
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a user", parents=[store])
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="writer", help="default: writer")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of asking")
    passwd = actions.add_parser("passwd", help="set a new password (ends the user's sessions)",
                                parents=[store])
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input instead of asking")
    token = actions.add_parser("token", help="print a new API token for the user",
                               parents=[store])
    token.add_argument("name")
    token.add_argument("--label", default="", help="what the token is for")
    actions.add_parser("list", help="list users and their roles", parents=[store])
    remove = actions.add_parser("remove", help="remove a user and their tokens",
                                parents=[store])
    remove.add_argument("name")
    return parser


def _stop(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


def serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .auth import NoUsers, no_users_message
    from .server import tune_malloc, make_server, server_url

    tune_malloc()  # before any thread (drivers start theirs in create_app)
    settings = _settings(args, **{key: getattr(args, key) for key in
                                  ("host", "port", "max_upload_size", "threads")})
    try:
        app = create_app(settings)
    except NoUsers as exc:  # suggest adding the user where this server looks for users
        raise ConfigError(no_users_message(exc.host, _store_args(args))) from None
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
    settings = _settings(args)
    from .features import Feature, all_collections, init_db_lines, installed_features

    cls, features = load_backend(settings.backend), installed_features()
    lines = cls.init_db(settings, settings.options_for(settings.backend), admin_url=args.admin_url,
                        collections=all_collections(features))
    if any(type(f).init_db is not Feature.init_db for f in features):
        store = cls.from_config(settings, settings.options_for(settings.backend))
        try:  # features with set-up of their own run it on the store just set up
            lines += init_db_lines(settings, store, features)
        finally:
            store.close()
    for line in lines or [f"{settings.backend}: nothing to set up"]:
        print(f"fileserver: {line}")
    # Opened to say which store is ready; this makes an embedded data directory,
    # as set-up makes a database for the other backends.
    documents = cls.open_documents(settings, settings.options_for(settings.backend))
    documents.close()
    print(f"fileserver: the {settings.backend} store at {documents.location} is ready")
    return 0


def migrate(args: argparse.Namespace) -> int:
    from .backends import open_store
    from .migrate import migrate as run

    source_settings = _settings(args)
    target_settings = load_settings(args.to_config, env={})
    _require_store(args, source_settings)  # an empty source would "migrate" nothing
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
          f"{len(report.failed)} failed; {report.documents_copied} of {report.documents} "
          "documents copied (the rest were there)", flush=True)
    return 1 if report.failed else 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("The two passwords differ; nothing was changed.")
    return first


def user(args: argparse.Namespace) -> int:
    from .accounts import Accounts

    settings = _settings(args)
    if args.action in NEEDS_STORE:
        _require_store(args, settings)
    documents = load_backend(settings.backend).open_documents(
        settings, settings.options_for(settings.backend))
    # On standard error: `user token` prints only the token on standard output.
    print(f"fileserver: accounts of the {settings.backend} backend at {documents.location}",
          file=sys.stderr, flush=True)
    accounts = Accounts(documents)
    try:
        if args.action == "add":
            accounts.add(args.name, args.role, _password(args))
            print(f"fileserver: added {args.name} ({args.role})")
        elif args.action == "passwd":
            accounts.set_password(args.name, _password(args))
            print(f"fileserver: changed the password of {args.name}; their sessions ended")
        elif args.action == "token":
            _, token = accounts.new_token(args.name, args.label)
            print(token)
        elif args.action == "list":
            for account in accounts.users():
                tokens = len(accounts.tokens(account.name))
                print(f"{account.name:24} {account.role:7} {tokens} token(s), "
                      f"since {account.created}")
        elif args.action == "remove":
            accounts.remove(args.name)
            print(f"fileserver: removed {args.name} and their tokens")
    finally:
        documents.close()
    return 0


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
        commands = {"serve": serve, "init-db": init_db, "migrate": migrate, "user": user,
                    "backends": lambda _: list_backends()}
        return commands[args.command](args)
    except NoStore as exc:
        print(f"fileserver: {exc}", file=sys.stderr)
        return 1
    except (Error, AccountError) as exc:
        print(f"fileserver: error: {exc}", file=sys.stderr)
        return 2
