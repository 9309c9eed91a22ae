"""`fileserver user ...` beside a running server, on every backend: the accounts
live in the backend, so the serving process sees what the command wrote."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import Backend, start_server


def user_cli(config, *args: str, password: str | None = None):
    command = [sys.executable, "-m", "fileserver", "user", "--config", str(config), *args]
    if password is not None:
        command.append("--password-stdin")
    return subprocess.run(command, input=None if password is None else password + "\n",
                          capture_output=True, text=True, timeout=60)


def call(url: str, method: str = "GET", body: bytes | None = None,
         auth: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            is_json = response.headers.get("Content-Type", "").startswith("application/json")
            return response.status, json.loads(text) if is_json else {"body": text}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_user_commands_beside_a_running_server(backend, tmp_path):
    server = start_server(tmp_path / "srv", backend.config(tmp_path / "srv"))
    config = server.workdir / "fileserver.ini"
    try:
        assert call(server.url + "files/open.txt", "PUT", b"x")[0] == 201  # no users yet
        done = user_cli(config, "add", "carol", "--role", "writer", password="carol-password")
        assert done.returncode == 0, done.stderr
        assert "added carol (writer)" in done.stdout
        again = user_cli(config, "add", "carol", password="carol-password")
        assert again.returncode == 2 and "exists already" in again.stderr
        short = user_cli(config, "add", "dave", password="short")
        assert short.returncode == 2 and "too short" in short.stderr
        bad = user_cli(config, "add", "../x", password="long-enough")
        assert bad.returncode == 2 and "not a user name" in bad.stderr

        # the server sees the new user within its few seconds of caching "no users"
        status, body = call(server.url + "files/c.txt", "PUT", b"c",
                            basic("carol", "carol-password"))
        assert status == 201 and body["owner"] == "carol"
        for _ in range(100):  # "no users" is remembered for 5 s
            anonymous = call(server.url + "files/anon.txt", "PUT", b"a")[0]
            if anonymous == 401:
                break
            time.sleep(0.1)
        assert anonymous == 401  # with a user, anonymous (unset) is none

        token = user_cli(config, "token", "carol", "--label", "ci")
        assert token.returncode == 0, token.stderr
        bearer = "Bearer " + token.stdout.strip()
        assert call(server.url + "files/c.txt", "GET", auth=bearer)[0] == 200

        listed = user_cli(config, "list")
        assert listed.returncode == 0 and "carol" in listed.stdout and "1 token(s)" in listed.stdout

        assert user_cli(config, "passwd", "carol", password="carol-new-password").returncode == 0
        assert call(server.url + "files/c.txt", auth=basic("carol", "carol-password"))[0] == 401
        assert call(server.url + "files/c.txt", auth=basic("carol", "carol-new-password"))[0] == 200

        removed = user_cli(config, "remove", "carol")
        assert removed.returncode == 0, removed.stderr
        assert call(server.url + "files/c.txt", auth=bearer)[0] == 401  # her token went too
        missing = user_cli(config, "remove", "carol")
        assert missing.returncode == 2 and "no user 'carol'" in missing.stderr
        assert server.process.poll() is None
    finally:
        server.stop()


def test_a_public_address_without_users_does_not_start(tmp_path):
    config = tmp_path / "fileserver.ini"
    config.write_text(f"[fileserver]\ndata_dir = {tmp_path / 'data'}\n")
    result = subprocess.run([sys.executable, "-m", "fileserver", "serve", "--config", str(config),
                             "--host", "0.0.0.0", "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "0.0.0.0, which is not loopback, and no user exists" in result.stderr
    assert "Traceback" not in result.stderr


def fileserver(*args: str, password: str | None = None) -> subprocess.CompletedProcess:
    """The command as an operator runs it: no FILESERVER_* settings from this shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
    return subprocess.run([sys.executable, "-m", "fileserver", *args], env=env,
                          input=None if password is None else password + "\n",
                          capture_output=True, text=True, timeout=60)


def test_the_refusal_suggests_adding_the_user_to_the_same_store(tmp_path):
    config, data = tmp_path / "fs.ini", tmp_path / "my data"
    config.write_text(f"[fileserver]\ndata_dir = {tmp_path / 'not this one'}\n")
    store = ("--config", str(config), "--data-dir", str(data))
    refused = fileserver("serve", "--host", "0.0.0.0", "--port", "0", *store)
    assert refused.returncode == 2, refused.stderr
    hint = refused.stderr.split("`")[1]
    assert hint == (f"fileserver user add NAME --role admin --config {shlex.quote(str(config))} "
                    f"--data-dir {shlex.quote(str(data))}")

    # run as suggested, it adds the user where that server looks for users
    argv = ["root" if part == "NAME" else part for part in shlex.split(hint)[1:]]
    added = fileserver(*argv, "--password-stdin", password="root-password")
    assert added.returncode == 0, added.stderr
    assert f"accounts of the embedded backend at {data}" in added.stderr
    listed = fileserver("user", "list", "--data-dir", str(data))
    assert listed.stdout.split()[:2] == ["root", "admin"]
    assert not (tmp_path / "not this one").exists()


def config_without_store(backend: Backend, root) -> tuple[str, dict]:
    """A config naming a store of ``backend`` that nobody made."""
    options = backend.fresh_options(root)
    lines = ["[fileserver]", f"backend = {backend.name}", f"data_dir = {root / 'data'}",
             "", f"[backend.{backend.name}]", *(f"{k} = {v}" for k, v in options.items())]
    (root / "fs.ini").write_text("\n".join(lines) + "\n")
    return str(root / "fs.ini"), options


def store_exists(backend: Backend, options: dict) -> bool:
    if backend.name == "embedded":
        return Path(options["path"]).exists()
    if backend.name == "couchdb":
        import couchdb

        return options["database"] in couchdb.Server(backend.admin_url)
    import pymongo

    client = pymongo.MongoClient(options["uri"])
    try:
        return options["database"] in client.list_database_names()
    finally:
        client.close()


def test_commands_on_existing_accounts_create_no_store(backend, tmp_path):
    config, options = config_without_store(backend, tmp_path)
    for action in (["list"], ["token", "ann"], ["remove", "ann"]):
        result = fileserver("user", *action, "--config", config)
        assert result.returncode == 1, (action, result.stderr)
        assert f"no {backend.name} store: " in result.stderr
        assert "nothing was created" in result.stderr and "Traceback" not in result.stderr
        assert all(flag in result.stderr for flag in ("--data-dir", "--config", "--backend"))
        assert f"--config {shlex.quote(config)}" in result.stderr  # how to make one, there
        assert not store_exists(backend, options)

    # `user add` writes: it may make the store (CouchDB: only init-db, as an admin, may)
    added = fileserver("user", "add", "ann", "--config", config, "--password-stdin",
                       password="ann-password")
    if backend.name == "couchdb":
        assert added.returncode == 2 and "init-db" in added.stderr
        assert not store_exists(backend, options)
        return
    assert added.returncode == 0, added.stderr
    assert f"accounts of the {backend.name} backend at " in added.stderr
    listed = fileserver("user", "list", "--config", config)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:2] == ["ann", "writer"]
