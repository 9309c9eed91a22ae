"""End to end: the real `fileserver serve` process, driven by the real curl binary.

Every checked request goes through curl in a subprocess (no Python HTTP
client), so what is tested is what a person typing the README's curl
commands gets: status lines, headers and the exact bytes, on a random
binary file of more than 50 MB.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CURL = shutil.which("curl") or "curl"
BIG_SIZE = 50 * 1024 * 1024 + 12_345  # > 50 MB and not a multiple of any buffer size
CHUNK = 1 << 20


# -- helpers -------------------------------------------------------------------------


@dataclass
class BigFile:
    path: Path
    size: int
    sha256: str

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file."""
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> BigFile:
    """A random binary file of BIG_SIZE bytes, written once per module."""
    path = tmp_path_factory.mktemp("big") / "random.bin"
    digest = hashlib.sha256()
    left = BIG_SIZE
    with open(path, "wb") as out:
        while left:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return BigFile(path, BIG_SIZE, digest.hexdigest())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Reply:
    """One curl run: the final response's status, headers (lower-case names) and body."""

    returncode: int
    status: int
    headers: dict[str, str]
    body: bytes
    stderr: str

    def json(self):
        return json.loads(self.body)


def curl(*args: str, input: bytes | None = None, stdin=None, timeout: float = 60,
         ok: bool = True) -> subprocess.CompletedProcess:
    """Run ``curl -s -S ARGS``; with ``ok`` the exit code must be 0."""
    proc = subprocess.run([CURL, "-s", "-S", *args], input=input, stdin=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if ok:
        assert proc.returncode == 0, (
            f"curl {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
            f"\n{proc.stdout[:2000].decode(errors='replace')}")
    return proc


def _parse(out: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split curl's ``-D -`` output: skip interim 1xx blocks, parse the final one."""
    rest = out
    while True:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"no complete header block in curl output: {out[:500]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if 100 <= status < 200:
            continue
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        return status, headers, rest


def http(*args: str, ok: bool = True, **kw) -> Reply:
    """curl with the response headers on stdout (``-D -``) and parsed.

    The body follows on stdout unless ``-o FILE`` is among ``args``.
    ``ok=True`` adds ``--fail-with-body`` and requires exit code 0.
    """
    extra = ["--fail-with-body"] if ok else []
    head = [] if "-I" in args else ["-D", "-"]
    proc = curl(*extra, *head, *args, ok=ok, **kw)
    status, headers, body = _parse(proc.stdout)
    return Reply(proc.returncode, status, headers, body, proc.stderr.decode(errors="replace"))


def listed_names(base: str) -> set[str]:
    reply = http(base + "files/?format=json&limit=1000")
    assert reply.headers["content-type"].startswith("application/json")
    return {f["name"] for f in reply.json()["files"]}


def put_big(base: str, big: BigFile, name: str) -> Reply:
    reply = http("-T", str(big.path), base + "files/" + name)
    assert reply.status == 201, reply
    return reply


# -- uploads and downloads -----------------------------------------------------------


def test_put_big_file_created_then_replaced(live_server, big_file, tmp_path):
    base = live_server.url
    url = base + "files/data/random.bin"

    reply = http("-T", str(big_file.path), url)
    assert reply.status == 201
    assert reply.headers["location"] == url
    assert reply.headers["content-type"].startswith("application/json")
    info = reply.json()
    assert info["name"] == "data/random.bin"
    assert info["size"] == big_file.size
    assert info["sha256"] == big_file.sha256
    assert info["url"] == url
    assert info["content_type"] == "application/octet-stream"

    # the download is the upload, byte for byte
    out = tmp_path / "download.bin"
    reply = http("-o", str(out), url)
    assert reply.status == 200
    assert reply.headers["content-length"] == str(big_file.size)
    assert out.stat().st_size == big_file.size
    assert filecmp.cmp(out, big_file.path, shallow=False)
    out.unlink()

    # a second PUT to the same name replaces it: 200, no Location
    small = tmp_path / "small.bin"
    small.write_bytes(b"replaced\x00\xff" * 1000)
    reply = http("-T", str(small), url)
    assert reply.status == 200
    assert "location" not in reply.headers
    info = reply.json()
    assert info["size"] == small.stat().st_size
    assert info["sha256"] == hashlib.sha256(small.read_bytes()).hexdigest()
    assert http(url).body == small.read_bytes()
    assert listed_names(base) == {"data/random.bin"}


def test_put_keeps_unicode_names_and_guesses_type(live_server, tmp_path):
    base = live_server.url
    src = tmp_path / "note.txt"
    src.write_text("héllo wörld\n", encoding="utf-8")
    url = base + "files/dir%20x/%C3%A9t%C3%A9.txt"
    reply = http("-T", str(src), url)
    assert reply.status == 201
    assert reply.json()["name"] == "dir x/été.txt"
    assert reply.json()["content_type"].startswith("text/plain")
    reply = http(url)
    assert reply.body == src.read_bytes()
    assert reply.headers["content-type"].startswith("text/plain")
    assert "filename*=UTF-8''%C3%A9t%C3%A9.txt" in reply.headers["content-disposition"]
    assert reply.headers["content-disposition"].startswith("inline")
    reply = http(url + "?download")
    assert reply.headers["content-disposition"].startswith("attachment")


def test_multipart_upload_of_several_files(live_server, big_file, tmp_path):
    base = live_server.url
    small = tmp_path / "small.txt"
    small.write_bytes(b"a small text file\n")
    reply = http("-F", f"file=@{big_file.path}", "-F", f"file=@{small}", base + "files/up/")
    assert reply.status == 201
    stored = reply.json()
    assert isinstance(stored, list)
    assert [(s["name"], s["size"], s["sha256"]) for s in stored] == [
        ("up/random.bin", big_file.size, big_file.sha256),
        ("up/small.txt", small.stat().st_size, hashlib.sha256(small.read_bytes()).hexdigest()),
    ]
    assert [s["url"] for s in stored] == [base + "files/up/random.bin", base + "files/up/small.txt"]

    out = tmp_path / "out.bin"
    http("-o", str(out), base + "files/up/random.bin")
    assert filecmp.cmp(out, big_file.path, shallow=False)
    assert http(base + "files/up/small.txt").body == small.read_bytes()
    assert listed_names(base) == {"up/random.bin", "up/small.txt"}


def test_chunked_uploads_are_stored_exactly(live_server, big_file, tmp_path):
    base = live_server.url
    # `curl -T -` reads stdin and, not knowing the length, sends it chunked
    with open(big_file.path, "rb") as stdin:
        reply = http("-T", "-", base + "files/from-stdin.bin", stdin=stdin)
    assert reply.status == 201
    assert (reply.json()["size"], reply.json()["sha256"]) == (big_file.size, big_file.sha256)

    # a file body forced into chunked transfer coding
    reply = http("-T", str(big_file.path), "-H", "Transfer-Encoding: chunked",
                 base + "files/forced-chunked.bin")
    assert reply.status == 201
    assert (reply.json()["size"], reply.json()["sha256"]) == (big_file.size, big_file.sha256)

    for name in ("from-stdin.bin", "forced-chunked.bin"):
        out = tmp_path / name
        http("-o", str(out), base + "files/" + name)
        assert sha256_of(out) == big_file.sha256
        out.unlink()

    # an empty chunked body is an empty file, not an error
    reply = http("-T", "-", base + "files/empty.bin", input=b"")
    assert reply.status == 201
    assert reply.json()["size"] == 0
    assert reply.json()["sha256"] == hashlib.sha256(b"").hexdigest()
    assert http(base + "files/empty.bin").body == b""


# -- ranges, HEAD, conditional requests ---------------------------------------------------


def test_ranges(live_server, big_file):
    base = live_server.url
    put_big(base, big_file, "random.bin")
    url = base + "files/random.bin"
    size = big_file.size

    cases = [
        ("0-0", 0, 1),                                   # first byte
        ("1000-1999", 1000, 2000),                       # a-b
        ("12345678-13345677", 12_345_678, 13_345_678),   # 1 MB in the middle
        (f"{size - 300_000}-", size - 300_000, size),    # a- (to the end)
        ("-4096", size - 4096, size),                    # -n (the last n bytes)
        (f"{size - 10}-{size - 1}", size - 10, size),    # the last ten bytes, explicitly
        (f"{size - 10}-{size + 1000}", size - 10, size),  # end past the file: clipped
        (f"{size - 1}-", size - 1, size),                # the very last byte
    ]
    for spec, start, end in cases:
        reply = http("-r", spec, url)
        assert reply.status == 206, spec
        assert reply.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", spec
        assert reply.headers["content-length"] == str(end - start), spec
        assert reply.headers["etag"] == f'"{big_file.sha256}"', spec
        assert reply.body == big_file.read(start, end), spec

    # a larger open-ended range straight to a file
    start = 40_000_000
    reply = http("-r", f"{start}-", url)
    assert reply.status == 206
    assert len(reply.body) == size - start
    assert hashlib.sha256(reply.body).digest() == hashlib.sha256(big_file.read(start, size)).digest()

    # unsatisfiable: starts at or past the end
    for spec in (f"{size}-", f"{size + 5}-{size + 10}"):
        reply = http("-r", spec, url, ok=False)
        assert reply.returncode == 0  # without --fail curl is happy with any status
        assert reply.status == 416, spec
        assert reply.headers["content-range"] == f"bytes */{size}"
        error = reply.json()
        assert error["status"] == 416 and error["error"]
    # and --fail-with-body turns that into curl's exit code 22
    assert curl("--fail-with-body", "-r", f"{size}-", url, ok=False).returncode == 22

    # If-Range with the current ETag honours the range; a stale one sends everything
    reply = http("-r", "0-9", "-H", f'If-Range: "{big_file.sha256}"', url)
    assert reply.status == 206 and reply.body == big_file.read(0, 10)
    reply = http("-r", "0-9", "-H", 'If-Range: "stale"', "-o", os.devnull, url)
    assert reply.status == 200
    assert reply.headers["content-length"] == str(size)


def test_head_headers_and_conditional_get(live_server, big_file):
    base = live_server.url
    put_big(base, big_file, "random.bin")
    url = base + "files/random.bin"

    reply = http("-I", url)
    assert reply.status == 200
    assert reply.body == b""
    h = reply.headers
    assert h["content-length"] == str(big_file.size)
    assert h["etag"] == f'"{big_file.sha256}"'
    assert h["accept-ranges"] == "bytes"
    assert h["content-type"] == "application/octet-stream"
    assert h["x-content-type-options"] == "nosniff"
    modified = time.strptime(h["last-modified"], "%a, %d %b %Y %H:%M:%S GMT")
    assert abs(time.mktime(modified) - time.mktime(time.gmtime())) < 300

    # HEAD with a range answers like the GET would, without the body
    reply = http("-I", "-r", "100-199", url)
    assert reply.status == 206
    assert reply.headers["content-length"] == "100"
    assert reply.headers["content-range"] == f"bytes 100-199/{big_file.size}"

    # conditional GET: the current ETag -> 304 and no body
    reply = http("-H", f'If-None-Match: "{big_file.sha256}"', url)
    assert reply.status == 304
    assert reply.body == b""
    assert reply.headers["etag"] == f'"{big_file.sha256}"'
    reply = http("-H", f'If-None-Match: "other", W/"{big_file.sha256}"', url)
    assert reply.status == 304
    # another ETag -> the whole file
    reply = http("-H", 'If-None-Match: "something-else"', "-o", os.devnull, url)
    assert reply.status == 200
    # If-Modified-Since (curl -z) with the Last-Modified date -> 304
    reply = http("-z", h["last-modified"], url)
    assert reply.status == 304 and reply.body == b""


# -- delete, errors, listing -------------------------------------------------------


def test_delete_then_404(live_server, tmp_path):
    base = live_server.url
    src = tmp_path / "gone.txt"
    src.write_bytes(b"soon gone\n")
    url = base + "files/gone.txt"
    assert http("-T", str(src), url).status == 201

    reply = http("-X", "DELETE", url)
    assert reply.status == 204
    assert reply.body == b""

    reply = http(url, ok=False)
    assert reply.status == 404
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()
    assert error["status"] == 404
    assert isinstance(error["error"], str) and "gone.txt" in error["error"]
    # with --fail-with-body curl exits 22 but still shows the JSON
    proc = curl("--fail-with-body", url, ok=False)
    assert proc.returncode == 22
    assert json.loads(proc.stdout)["status"] == 404

    reply = http("-X", "DELETE", url, ok=False)
    assert reply.status == 404
    assert reply.json()["status"] == 404
    assert listed_names(base) == set()


def test_json_listing(live_server, tmp_path):
    base = live_server.url
    for name, data in [("a.txt", b"a"), ("b/c.txt", b"cc"), ("b/d/e.bin", b"eee"), ("z.bin", b"")]:
        src = tmp_path / "src"
        src.write_bytes(data)
        assert http("-T", str(src), base + "files/" + name).status == 201

    # curl's default Accept (*/*) gets JSON, not the HTML page
    reply = http("-H", "Accept: application/json", base + "files/")  # the README's one flag
    assert reply.headers["content-type"].startswith("application/json")
    listing = reply.json()
    assert [(f["name"], f["size"]) for f in listing["files"]] == [
        ("a.txt", 1), ("b/c.txt", 2), ("b/d/e.bin", 3), ("z.bin", 0)]
    assert listing["folders"] == []
    assert listing["next"] is None
    assert all(f["url"] == base + "files/" + f["name"] for f in listing["files"])
    assert all(len(f["sha256"]) == 64 for f in listing["files"])

    # a folder URL lists that folder; a delimiter groups sub-folders
    listing = http(base + "files/b/?delimiter=/&format=json").json()
    assert [f["name"] for f in listing["files"]] == ["b/c.txt"]
    assert listing["folders"] == ["b/d/"]
    listing = http(base + "files/?delimiter=/&format=json").json()
    assert [f["name"] for f in listing["files"]] == ["a.txt", "z.bin"]
    assert listing["folders"] == ["b/"]

    # paging: limit + next
    first = http(base + "files/?limit=2&format=json").json()
    assert [f["name"] for f in first["files"]] == ["a.txt", "b/c.txt"]
    assert first["next"]
    second = http(base.rstrip("/") + first["next"]).json()
    assert [f["name"] for f in second["files"]] == ["b/d/e.bin", "z.bin"]

    # a browser-like Accept gets the HTML page
    reply = http("-H", "Accept: text/html", base + "files/")
    assert reply.headers["content-type"].startswith("text/html")
    assert b"a.txt" in reply.body


# -- limits ---------------------------------------------------------------------------


def test_oversized_upload_refused(backend, tmp_path, big_file):
    server = start_server(tmp_path / "x", backend.config(tmp_path / "x"),
                          "--max-upload-size", "1M")
    try:
        base = server.url
        body = tmp_path / "five-mb.bin"
        with open(big_file.path, "rb") as src, open(body, "wb") as out:
            out.write(src.read(5 * 1024 * 1024))
        attempts = {
            "plain.bin": ["-T", str(body)],
            "chunked.bin": ["-T", str(body), "-H", "Transfer-Encoding: chunked"],
            "stdin.bin": ["-T", "-"],
        }
        for name, args in attempts.items():
            stdin = open(body, "rb") if "-" in args else None
            try:
                reply = http(*args, base + "files/" + name, ok=False, stdin=stdin)
            finally:
                if stdin:
                    stdin.close()
            assert reply.status == 413, (name, reply)
            assert reply.headers["content-type"].startswith("application/json")
            error = reply.json()
            assert error["status"] == 413
            assert "nothing was stored" in error["error"]

        # multipart is held to the same limit
        reply = http("-F", f"file=@{body}", base + "files/", ok=False)
        assert reply.status == 413
        assert reply.json()["status"] == 413

        # just over the limit, but within waitress's multipart slack: the store refuses
        just_over = tmp_path / "just-over.bin"
        just_over.write_bytes(b"\x01" * (1024 * 1024 + 1))
        reply = http("-T", str(just_over), base + "files/just-over.bin", ok=False)
        assert reply.status == 413
        assert reply.json()["status"] == 413

        # Refused while streaming: the server answers long before the body is
        # through, so curl stops sending (what it did send is socket buffers).
        for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
            proc = curl(*extra, "-o", os.devnull, "-w", "%{http_code} %{size_upload}",
                        "-T", str(big_file.path), base + "files/huge.bin", ok=False)
            code, sent = proc.stdout.decode().split()
            assert code == "413"
            assert int(sent) < big_file.size // 2, f"sent {sent} of {big_file.size} bytes"

        assert listed_names(base) == set()
        for name in (*attempts, "five-mb.bin", "just-over.bin", "huge.bin"):
            assert http(base + "files/" + name, ok=False).status == 404

        # the server still works, and exactly at the limit is allowed
        at_limit = tmp_path / "at-limit.bin"
        at_limit.write_bytes(b"\x02" * (1024 * 1024))
        reply = http("-T", str(at_limit), base + "files/at-limit.bin")
        assert reply.status == 201 and reply.json()["size"] == 1024 * 1024
        assert listed_names(base) == {"at-limit.bin"}
    finally:
        server.stop()


# -- crash safety --------------------------------------------------------------------------


def _bytes_read(pid: int) -> int:
    """How much a running process has read so far (Linux /proc/PID/io rchar)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def test_sigkill_during_upload_keeps_earlier_files(live_server, big_file, tmp_path):
    base = live_server.url
    put_big(base, big_file, "keep/random.bin")
    note = tmp_path / "note.txt"
    note.write_bytes(b"an earlier small file\n")
    assert http("-T", str(note), base + "files/keep/note.txt").status == 201

    # a slow upload: 50 MB at 2 MB/s takes ~25 s; kill the server a few MB in
    upload = subprocess.Popen(
        [CURL, "-s", "-S", "--limit-rate", "2M", "-o", os.devnull, "-T", str(big_file.path),
         base + "files/partial.bin"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # wait until curl has read (and so is sending) a few MB of the body
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _bytes_read(upload.pid) < 3 * CHUNK:
            time.sleep(0.1)
        assert _bytes_read(upload.pid) >= 3 * CHUNK, "the upload did not get going"
        assert upload.poll() is None, "the rate-limited upload finished too soon"
        assert live_server.stop(signal.SIGKILL) == -signal.SIGKILL
        _, err = upload.communicate(timeout=30)
        assert upload.returncode != 0, "curl should see the connection die"
    finally:
        if upload.poll() is None:
            upload.kill()
            upload.wait()

    config = (live_server.workdir / "fileserver.ini").read_text()
    server = start_server(live_server.workdir, config)
    try:
        base = server.url
        assert listed_names(base) == {"keep/random.bin", "keep/note.txt"}
        assert http(base + "files/partial.bin", ok=False).status == 404

        out = tmp_path / "after.bin"
        reply = http("-o", str(out), base + "files/keep/random.bin")
        assert reply.headers["etag"] == f'"{big_file.sha256}"'
        assert filecmp.cmp(out, big_file.path, shallow=False)
        assert http(base + "files/keep/note.txt").body == note.read_bytes()

        # the interrupted name is free: uploading it now creates it
        reply = http("-T", str(note), base + "files/partial.bin")
        assert reply.status == 201
    finally:
        server.stop()
