"""`fileserver user ...` beside a running server, on every backend: the accounts
live in the backend, so the serving process sees what the command wrote."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from conftest import start_server


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
