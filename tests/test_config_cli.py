"""Settings precedence, startup errors and the `fileserver` command."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import start_server
from fileserver.config import DEFAULT_MAX_UPLOAD, load_settings, parse_size
from fileserver.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 60, input: str | None = None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FILESERVER_")}
    return subprocess.run([sys.executable, "-m", "fileserver", *args], cwd=cwd,
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, input=input)


@pytest.mark.parametrize("text, value", [
    ("1234", 1234), ("10M", 10 * 1024**2), ("2G", 2 * 1024**3), ("1.5k", 1536),
    ("512MiB", 512 * 1024**2), ("3 GB", 3 * 1024**3), ("0", None), ("unlimited", None),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5", "1e9"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert (settings.host, settings.port, settings.backend) == ("127.0.0.1", 8080, "embedded")
    assert settings.data_dir == str(tmp_path / "fileserver-data")
    assert settings.max_upload_size == DEFAULT_MAX_UPLOAD


def test_file_then_environment_then_flags(tmp_path):
    ini = tmp_path / "conf" / "fs.ini"
    ini.parent.mkdir()
    ini.write_text("[fileserver]\nhost = 0.0.0.0\nport = 9000\ndata_dir = store\n"
                   "max_upload_size = 5M\n\n[backend.embedded]\npath = elsewhere\n")
    settings = load_settings(str(ini), env={})
    assert (settings.host, settings.port, settings.max_upload_size) == \
        ("0.0.0.0", 9000, 5 * 1024**2)
    assert settings.data_dir == str(ini.parent / "store")  # relative to the file
    assert settings.options_for("embedded") == {"path": "elsewhere"}

    env = {"FILESERVER_CONFIG": str(ini), "FILESERVER_PORT": "9001", "FILESERVER_HOST": "::1"}
    settings = load_settings(env=env)
    assert (settings.host, settings.port) == ("::1", 9001)

    settings = load_settings(env=env, overrides={"port": "9002", "host": None})
    assert (settings.host, settings.port) == ("::1", 9002)


@pytest.mark.parametrize("source, key", [
    ({"env": {"FILESERVER_PORT": "eighty"}}, "port"),
    ({"env": {"FILESERVER_PORT": "70000"}}, "port"),
    ({"env": {"FILESERVER_MAX_UPLOAD_SIZE": "lots"}}, "max_upload_size"),
    ({"overrides": {"threads": "0"}}, "threads"),
    ({"overrides": {"host": " "}}, "host"),
])
def test_bad_values_name_the_key_and_source(source, key):
    with pytest.raises(ConfigError, match=rf"^{key}: .*\(from (FILESERVER_|--)"):
        load_settings(env=source.get("env", {}), overrides=source.get("overrides"))


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(str(tmp_path / "missing.ini"), env={})
    bad = tmp_path / "bad.ini"
    bad.write_text("[fileserver]\nprot = 80\n")
    with pytest.raises(ConfigError, match="prot: unknown key"):
        load_settings(str(bad), env={})
    bad.write_text("[server]\nport = 80\n")
    with pytest.raises(ConfigError, match=r"unknown section \[server\]"):
        load_settings(str(bad), env={})


def test_backends_command_lists_embedded():
    result = run_cli("backends")
    assert result.returncode == 0
    assert "embedded" in result.stdout and "ok" in result.stdout


def test_unknown_backend_fails_at_startup_listing_installed(tmp_path):
    result = run_cli("serve", "--backend", "nosuch", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown backend 'nosuch'" in result.stderr and "embedded" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_fails_at_startup(tmp_path):
    result = run_cli("serve", "--port", "x", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "port:" in result.stderr and "--port" in result.stderr


def test_second_server_on_one_data_dir_is_refused(tmp_path):
    config = f"[fileserver]\ndata_dir = {tmp_path / 'data'}\n"
    first = start_server(tmp_path / "one", config)
    try:
        result = run_cli("serve", "--config", str(tmp_path / "one" / "fileserver.ini"),
                         "--port", "0")
        assert result.returncode == 2
        assert "in use by another fileserver process" in result.stderr
    finally:
        first.stop()


def test_serve_prints_one_line_and_stops_cleanly_on_ctrl_c(tmp_path):
    server = start_server(tmp_path / "srv", f"[fileserver]\ndata_dir = {tmp_path / 'd'}\n")
    try:
        with urllib.request.urlopen(server.url + "files/") as res:
            assert res.status == 200
        first = server.output().splitlines()[0]
        assert first.startswith("fileserver: serving http://127.0.0.1:")
        assert "embedded backend" in first and str(tmp_path / "d") in first
    finally:
        code = server.stop(signal.SIGINT)
    assert code == 0
    assert "fileserver: stopped" in server.output()
    assert "Traceback" not in server.output()


def test_default_data_dir_is_under_the_working_directory(tmp_path):
    server = start_server(tmp_path / "cwd", "[fileserver]\n")
    try:
        assert str(tmp_path / "cwd" / "fileserver-data") in server.output()
        assert (tmp_path / "cwd" / "fileserver-data" / "index.sqlite3").exists()
    finally:
        server.stop()


def test_wheel_ships_templates_and_static_files(tmp_path):
    """An installed copy must find views/ wherever it is started from."""
    # Built from a copy without build/ and the like, so nothing a previous build
    # left behind can slip into the wheel.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".test-tools", "build", "dist", "*.egg-info", "__pycache__",
        "node_modules", "fileserver-data"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "-w", str(tmp_path), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("fileserver-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ["fileserver/views/listing.tpl", "fileserver/views/base.tpl",
                     "fileserver/views/error.tpl", "fileserver/views/static/upload.js",
                     "fileserver/views/static/style.css", "fileserver_embedded/files.py"]:
        assert expected in names
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "fileserver = fileserver.cli:main" in entry_points
    assert "embedded = fileserver_embedded:EmbeddedStore" in entry_points
    assert "mosaic = fileserver_mosaic:plugin" in entry_points

    # Installed from the wheel into a fresh environment, started outside the
    # checkout: it serves files and pages and loads every plugin by its import
    # name. Its dependencies come from this environment's site-packages, added
    # by a .pth line (which, unlike a site dir, runs none of that dir's .pth
    # files, so this checkout's editable install stays out of it).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    ours = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    deps = sysconfig.get_paths()["purelib"]
    (Path(ours.stdout.strip()) / "deps.pth").write_text(deps + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                                "--disable-pip-version-check", "--target",
                                ours.stdout.strip(), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import fileserver, fileserver_embedded, fileserver_mosaic; "
             "print(fileserver.__file__); print(fileserver_mosaic.__file__)")
    where = subprocess.run([str(python), "-c", probe], cwd=elsewhere, capture_output=True,
                           text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert where.returncode == 0, where.stderr
    assert all(str(ROOT) not in line and "site-packages" in line
               for line in where.stdout.splitlines()), where.stdout
    server = subprocess.Popen([str(python), "-m", "fileserver", "serve", "--port", "0",
                               "--data-dir", str(tmp_path / "data")], cwd=elsewhere,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={"PATH": os.environ["PATH"]})
    try:
        url = re.search(r"serving (http://\S+/) ", server.stdout.readline()).group(1)
        request = urllib.request.Request(url + "files/w.txt", data=b"from the wheel",
                                         method="PUT")
        assert urllib.request.urlopen(request, timeout=30).status == 201
        page = urllib.request.urlopen(urllib.request.Request(
            url + "mosaic/tiles", headers={"Accept": "text/html"}), timeout=30).read().decode()
        assert "mosaic tiles" in page and "/static/style.css" in page
        assert urllib.request.urlopen(url + "static/style.css", timeout=30).status == 200
    finally:
        server.terminate()
        server.wait(15)


def test_a_third_party_backend_appears_through_its_entry_point(tmp_path):
    """What `pip install some-backend` does: a distribution with an entry point
    in the fileserver.backends group, importable from sys.path."""
    site = tmp_path / "site"
    dist = site / "thirdparty_store-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-store\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[fileserver.backends]\nmemo = thirdparty_store:MemoStore\n")
    (site / "thirdparty_store.py").write_text(
        "from fileserver_embedded import EmbeddedStore\n\n"
        "class MemoStore(EmbeddedStore):\n    pass\n")
    env = {"PYTHONPATH": str(site)}
    listing = run_cli("backends", env=env)
    assert "memo" in listing.stdout and "thirdparty_store:MemoStore" in listing.stdout
    server = subprocess.Popen(
        [sys.executable, "-m", "fileserver", "serve", "--backend", "memo", "--port", "0",
         "--data-dir", str(tmp_path / "d")], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "with the memo backend" in server.stdout.readline()
    finally:
        server.terminate()
        server.wait(15)


def test_init_db_command_is_safe_to_repeat(tmp_path):
    for _ in range(2):
        result = run_cli("init-db", "--data-dir", str(tmp_path / "d"))
        assert result.returncode == 0, result.stderr
        assert "embedded: nothing to set up" in result.stdout
        assert f"the embedded store at {tmp_path / 'd'} is ready" in result.stdout
    listed = run_cli("user", "list", "--data-dir", str(tmp_path / "d"))
    assert (listed.returncode, listed.stdout) == (0, "")  # a store, without users yet
    result = run_cli("init-db", "--backend", "nosuch")
    assert result.returncode == 2 and "unknown backend 'nosuch'" in result.stderr


def test_reading_a_missing_store_creates_none(tmp_path):
    missing, empty = tmp_path / "no such dir", tmp_path / "empty"
    empty.mkdir()
    for where, why in ((missing, f"no such directory {missing}"),
                       (empty, f"{empty} holds neither index.sqlite3 nor documents.sqlite3")):
        result = run_cli("user", "list", "--data-dir", str(where), cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert f"no embedded store: {why}" in result.stderr
        assert "Point at yours with --data-dir DIR, --config FILE or --backend NAME" \
            in result.stderr
        assert f"`fileserver init-db --data-dir {shlex.quote(str(where))}`" in result.stderr
    assert not missing.exists() and not any(empty.iterdir())
    assert not (tmp_path / "fileserver-data").exists()

    (tmp_path / "two.ini").write_text(f"[fileserver]\ndata_dir = {tmp_path / 'two'}\n")
    moved = run_cli("migrate", "--data-dir", str(missing), "--to-config", str(tmp_path / "two.ini"))
    assert moved.returncode == 1 and f"no embedded store: no such directory {missing}" in moved.stderr
    assert not missing.exists() and not (tmp_path / "two").exists()


def test_user_add_makes_the_store_it_names_then_list_reads_it(tmp_path):
    data = tmp_path / "new store"
    added = run_cli("user", "add", "ann", "--data-dir", str(data), "--password-stdin",
                    input="ann-password\n")
    assert added.returncode == 0, added.stderr
    assert f"fileserver: accounts of the embedded backend at {data}\n" == added.stderr
    listed = run_cli("user", "list", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    assert f"accounts of the embedded backend at {data}" in listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [["ann", "writer"]]


@pytest.mark.parametrize("name, driver", [("couchdb", "couchdb"), ("gridfs", "gridfs")])
def test_missing_driver_names_the_extra_to_install(monkeypatch, name, driver):
    from fileserver.backends import load_backend

    monkeypatch.setitem(sys.modules, driver, None)  # as if the package were not installed
    for module in [m for m in sys.modules if m.split(".")[0] == f"fileserver_{name}"]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ConfigError, match=rf"pip install 'fileserver\[{name}\]'"):
        load_backend(name)


def test_malloc_arenas_are_capped_unless_the_operator_chose(monkeypatch):
    import platform

    from fileserver.server import tune_malloc

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert tune_malloc() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")


def test_version():
    from fileserver import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fileserver {__version__}"


def test_store_options_go_anywhere_after_the_command(tmp_path):
    """--config, --backend and --data-dir work after `user` or after its action,
    and a user command says which store it touched."""
    data = tmp_path / "d"
    (tmp_path / "f.ini").write_text(f"[fileserver]\ndata_dir = {data}\n")
    config = str(tmp_path / "f.ini")
    for argv in (["user", "add", "ann", "--role", "admin", "--password-stdin", "--config", config],
                 ["user", "--config", config, "add", "ben", "--password-stdin"],
                 ["user", "add", "cat", "--data-dir", str(data), "--password-stdin"]):
        result = subprocess.run([sys.executable, "-m", "fileserver", *argv],
                                input="long-enough-pw\n", capture_output=True, text=True,
                                timeout=60, env={k: v for k, v in os.environ.items()
                                                 if not k.startswith("FILESERVER_")})
        assert result.returncode == 0, (argv, result.stderr)
        assert f"accounts of the embedded backend at {data}" in result.stderr
    listed = run_cli("user", "list", "--backend", "embedded", "--data-dir", str(data))
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["ann", "ben", "cat"]
    token = run_cli("user", "token", "ann", "--config", config)
    assert re.fullmatch(r"[0-9a-f]{16}\.\S+\n", token.stdout)  # only the token on stdout
    assert run_cli("init-db", "--data-dir", str(data)).returncode == 0


ACCESS_LINE = re.compile(r'127\.0\.0\.1 - (\S+) \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                         r'"(\w+) (\S+) HTTP/1\.1" (\d{3}) (\d+) "((?:[^"\\]|\\.)*)" '
                         r'"((?:[^"\\]|\\.)*)" '
                         r'(\d+\.\d{3}) (\d+)$')


def test_access_log_one_line_per_request(tmp_path):
    def requests_to(server) -> None:
        for method, path, body in [("PUT", "files/a.txt", b"hello"), ("GET", "files/a.txt", None),
                                   ("HEAD", "files/a.txt", None), ("GET", "files/none", None)]:
            request = urllib.request.Request(server.url + path, data=body, method=method,
                                             headers={"User-Agent": 'probe "1"',
                                                      "Referer": "http://x/"})
            try:
                urllib.request.urlopen(request, timeout=30).read()
            except urllib.error.HTTPError as error:
                assert error.code == 404

    server = start_server(tmp_path / "std", "[fileserver]\n")  # default: stdout
    try:
        requests_to(server)
        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        with socket.create_connection((host, port), timeout=10) as raw:  # no request line
            raw.sendall(b"\x01\x02 garbage\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.0 400")
        time.sleep(0.3)
        output = server.output()
        lines = [m.groups() for m in map(ACCESS_LINE.match, output.splitlines()) if m]
    finally:
        server.stop()
    assert "Traceback" not in output
    assert re.search(r'"- - HTTP/1\.0" 400 \d+ "-" "-" ', output), output
    assert [(m, p, s, n) for _, m, p, s, n, *_ in lines] == [
        ("PUT", "/files/a.txt", "201", lines[0][4]), ("GET", "/files/a.txt", "200", "5"),
        ("HEAD", "/files/a.txt", "200", "0"), ("GET", "/files/none", "404", lines[3][4])]
    assert all(line[5] == "http://x/" and line[6] == 'probe \\"1\\"' for line in lines)
    assert lines[0][8] == "5" and lines[1][8] == "0"  # request body bytes

    log = tmp_path / "access.log"
    for where, setting in (("file", str(log)), ("off", "off")):
        server = start_server(tmp_path / where, f"[fileserver]\naccess_log = {setting}\n")
        try:
            requests_to(server)
            time.sleep(0.3)
            assert not any(ACCESS_LINE.match(line) for line in server.output().splitlines())
        finally:
            server.stop()
    assert len([line for line in log.read_text().splitlines() if ACCESS_LINE.match(line)]) == 4
