"""Import from a URL (POST /files/ url=...) against a small local HTTP server.

Loopback is refused by default, so the happy paths turn on
url_import_private; the refusals run without it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import webtest

from fileserver import Settings, create_app
from fileserver.config import load_settings
from fileserver.errors import ConfigError
from fileserver.fetch import address_refusal, host_allowed

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
PAYLOAD = os.urandom(300_000)
FILES = {  # path -> (body, content type)
    "/files/photo.jpg": (PAYLOAD, "image/jpeg"),
    "/files/caf%C3%A9%20menu.txt": (b"soup\n", "text/plain; charset=utf-8"),
    "/files/blob": (b"no type given", "application/octet-stream"),
    "/": (b"<p>index</p>", "text/html"),
}


class Upstream(BaseHTTPRequestHandler):
    """Files, redirects, errors, and bodies that are slow, huge or cut short."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def send(self, status, body=b"", length=True, **headers):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.requests.append(self.path)
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if url.path in FILES:
            body, ctype = FILES[url.path]
            self.send(200, body, Content_Type=ctype)
        elif url.path == "/host":  # which Host header arrived
            self.send(200, self.headers["Host"].encode())
        elif url.path == "/redirect":
            self.send(int(query.get("status", 302)), Location=query["to"])
        elif parts[0] == "chain":  # /chain/N: N more redirects, then a file
            left = int(parts[1])
            if left:
                self.send(302, Location=f"/chain/{left - 1}")
            else:
                self.send(200, b"end of chain")
        elif parts[0] == "stream":  # /stream/N: N bytes, no Content-Length, then close
            self.send(200, length=False, Connection="close")
            self.wfile.write(b"s" * int(parts[1]))
            self.close_connection = True
        elif parts[0] == "chunked":  # /chunked/N: N bytes in 10 KiB chunks
            self.send(200, length=False, Transfer_Encoding="chunked")
            left = int(parts[1])
            while left:
                n = min(left, 10240)
                self.wfile.write(b"%x\r\n%s\r\n" % (n, b"c" * n))
                left -= n
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/announced-huge":  # says 1 GB; must be refused before reading
            self.send(200, length=False, Content_Length=str(10**9))
            self.wfile.write(b"h" * 1000)
            self.close_connection = True
        elif url.path == "/short":  # announces 1000 bytes, sends 10
            self.send(200, length=False, Content_Length="1000")
            self.wfile.write(b"0123456789")
            self.close_connection = True
        elif url.path == "/drip":  # one byte every 50 ms, for up to 30 s
            self.send(200, length=False, Content_Length="600")
            for _ in range(600):
                self.wfile.write(b"d")
                self.wfile.flush()
                time.sleep(0.05)
        elif url.path == "/stall":  # no answer for 10 s
            time.sleep(10)
            self.send(200, b"late")
        else:
            self.send(404, b"not here")


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients that hang up: expected
        pass


@pytest.fixture(scope="module")
def upstream():
    server = UpstreamServer(("127.0.0.1", 0), Upstream)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_port}"
    server.local = f"http://localhost:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_importer(make_store):
    """An app with url_import on; loopback allowed unless told otherwise."""
    def make(max_size=None, **options):
        options = {"url_import": True, "url_import_hosts": ("127.0.0.1", "localhost"),
                   "url_import_private": True, **options}
        settings = Settings(max_upload_size=max_size, **options)
        return webtest.TestApp(create_app(settings, store=make_store(max_size), catchall=False))
    return make


def listed(app):
    return [f["name"] for f in app.get("/files/?format=json&format=json").json["files"]]


def import_url(app, url, status, path="/files/", **fields):
    res = app.post(path, {"url": url, **fields}, status=status)
    if status >= 400:
        assert res.json["status"] == status
    return res


def refused(app, url, status, *words, **fields):
    """The import fails with ``status``, says ``words``, and nothing is stored."""
    res = import_url(app, url, status, **fields)
    for word in words:
        assert word in res.json["error"], res.json["error"]
    assert listed(app) == []
    return res.json["error"]


# -- off, on, and the happy paths --------------------------------------------------------


def test_off_by_default(app, upstream):
    seen = len(upstream.requests)
    refused(app, upstream.base + "/files/photo.jpg", 403, "url_import = on")
    res = app.post("/files/", [("url", upstream.base + "/")], content_type="multipart/form-data",
                   status=403)
    assert "url_import = on" in res.json["error"]
    assert listed(app) == []
    assert len(upstream.requests) == seen  # nothing was fetched


def test_on_without_hosts_names_the_setting(make_importer, upstream):
    app = make_importer(url_import_hosts=())
    refused(app, upstream.base + "/files/photo.jpg", 403, "url_import_hosts", "'127.0.0.1'")


def test_urlencoded_import_streams_into_the_store(make_importer, upstream):
    app = make_importer()
    res = import_url(app, upstream.base + "/files/photo.jpg", 201)
    [info] = res.json
    assert info["name"] == "photo.jpg"
    assert info["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert info["size"] == len(PAYLOAD)
    assert info["content_type"] == "image/jpeg"
    assert info["url"].endswith("/files/photo.jpg")
    assert app.get("/files/photo.jpg").body == PAYLOAD
    # The same shape as a multipart upload's answer.
    uploaded = app.post("/files/", upload_files=[("file", "b.bin", b"b")], status=201).json[0]
    assert set(info) == set(uploaded)


def test_files_before_a_failed_import_are_named_in_the_error(make_importer, upstream):
    app = make_importer()
    res = app.post("/files/", [("url", upstream.base + "/missing")],
                   upload_files=[("file", "first.txt", b"1")], status=502)
    assert "404" in res.json["error"]
    assert "Already stored from this request: first.txt." in res.json["error"]
    assert listed(app) == ["first.txt"]


def test_multipart_import_with_name_field_next_to_a_file(make_importer, upstream):
    app = make_importer()
    res = app.post("/files/album/", [("url", upstream.base + "/files/photo.jpg"), ("name", "me.jpg")],
                   upload_files=[("file", "other.txt", b"other")], status=201)
    assert [i["name"] for i in res.json] == ["album/other.txt", "album/me.jpg"]
    assert res.json[1]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert app.get("/files/album/me.jpg").body == PAYLOAD
    # The url part alone, name before it.
    res = app.post("/files/", [("name", "sub/x.jpg"), ("url", upstream.base + "/files/photo.jpg")],
                   content_type="multipart/form-data", status=201)
    assert res.json[0]["name"] == "sub/x.jpg"
    assert sorted(listed(app)) == ["album/me.jpg", "album/other.txt", "sub/x.jpg"]


def test_names_from_the_url_and_types(make_importer, upstream):
    app = make_importer()
    res = import_url(app, upstream.base + "/files/caf%C3%A9%20menu.txt?v=2#top", 201, path="/files/in/")
    assert res.json[0]["name"] == "in/café menu.txt"
    assert res.json[0]["content_type"] == "text/plain; charset=utf-8"
    assert import_url(app, upstream.base + "/", 201).json[0]["name"] == "download"
    # application/octet-stream says nothing: the store guesses from the name.
    res = import_url(app, upstream.base + "/files/blob", 201, name="blob.txt")
    assert res.json[0]["content_type"].startswith("text/plain")
    assert app.get("/files/blob.txt").body == b"no type given"


def test_bad_name_is_400_before_fetching(make_importer, upstream):
    app = make_importer()
    seen = len(upstream.requests)
    refused(app, upstream.base + "/files/photo.jpg", 400, "..", name="../escape")
    assert len(upstream.requests) == seen


def test_browser_form_is_redirected_to_the_folder(make_importer, upstream):
    app = make_importer()
    res = app.post("/files/pics/", {"url": upstream.base + "/files/photo.jpg"}, headers=HTML,
                   status=303)
    assert res.headers["Location"].endswith("/files/pics/")
    assert listed(app) == ["pics/photo.jpg"]


# -- where it may go ---------------------------------------------------------------------


def test_host_not_in_the_allowed_list(make_importer, upstream):
    app = make_importer(url_import_hosts=("example.org", "*.example.org"))
    refused(app, upstream.base + "/files/photo.jpg", 403, "'127.0.0.1'", "url_import_hosts",
            "example.org")


def test_localhost_refused_after_resolving(make_importer, upstream):
    app = make_importer(url_import_hosts=("localhost", "127.0.0.1"), url_import_private=False)
    seen = len(upstream.requests)
    error = refused(app, upstream.local + "/files/photo.jpg", 403, "loopback", "url_import_private")
    assert "'localhost'" in error
    refused(app, upstream.base + "/files/photo.jpg", 403, "127.0.0.1", "loopback")
    assert len(upstream.requests) == seen  # refused before connecting


@pytest.mark.parametrize("host, reason", [
    ("[::1]", "loopback"), ("[::ffff:127.0.0.1]", "loopback"), ("[::ffff:10.1.2.3]", "private"),
    ("10.0.0.1", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
    ("[fe80::1]", "link-local"), ("[fc00::1]", "private"), ("0.0.0.0", "unspecified"),
    ("[::]", "unspecified"), ("224.0.0.1", "multicast"), ("100.64.0.1", "not globally routable"),
])
def test_private_address_literals_refused(make_importer, host, reason):
    app = make_importer(url_import_hosts=("*",), url_import_private=False)
    refused(app, f"http://{host}:9/x", 403, reason, "url_import_private")


@pytest.mark.parametrize("address", [
    "10.0.0.1", "172.16.0.1", "192.168.0.1", "127.0.0.1", "127.9.9.9", "169.254.169.254",
    "0.0.0.0", "100.64.0.1", "224.0.0.1", "255.255.255.255", "192.0.2.1", "::1", "::",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "fc00::1", "fd12:3456::1", "fe80::1%eth0",
    "ff02::1", "2002:7f00:1::", "64:ff9b::a00:1", "::127.0.0.1", "2001:db8::1",
])
def test_address_checker_refuses(address):
    assert address_refusal(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34",
                                     "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_address_checker_allows_public(address):
    assert address_refusal(address) is None


def test_host_patterns():
    patterns = ("*.example.org", "files.test", "::1")
    assert host_allowed("a.example.org", patterns)
    assert host_allowed("a.b.example.org", patterns)
    assert not host_allowed("example.org", patterns)  # list it too to allow it
    assert not host_allowed("badexample.org", patterns)
    assert not host_allowed("example.org.evil.test", patterns)
    assert host_allowed("files.test", patterns) and not host_allowed("x.files.test", patterns)
    assert host_allowed("0:0::1", patterns)
    assert host_allowed("anything.test", ("*",))
    assert not host_allowed("anything.test", ())


def fake_dns(monkeypatch, answers):
    """``host -> [address lists, one per lookup]`` for names ending in .test."""
    real = socket.getaddrinfo
    lookups = []

    def getaddrinfo(host, port, *args, **kwargs):
        if not str(host).endswith(".test"):
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        addresses = answers[host][min(len(lookups), len(answers[host])) - 1]
        return [info for address in addresses for info in real(address, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_connects_to_the_checked_address_with_the_original_host(make_importer, upstream,
                                                                 monkeypatch):
    # A second lookup would get an address nobody answers on: one lookup, one connection.
    lookups = fake_dns(monkeypatch, {"rebind.test": [["127.0.0.1"], ["10.255.255.1"]]})
    app = make_importer(url_import_hosts=("*.test",), url_import_timeout=5.0)
    res = import_url(app, f"http://rebind.test:{upstream.server_port}/host", 201)
    assert lookups == ["rebind.test"]
    assert app.get("/files/host").body == f"rebind.test:{upstream.server_port}".encode()
    assert res.json[0]["name"] == "host"


def test_every_resolved_address_is_checked(make_importer, upstream, monkeypatch):
    fake_dns(monkeypatch, {"mixed.test": [["8.8.8.8", "127.0.0.1"]]})
    app = make_importer(url_import_hosts=("*.test",), url_import_private=False)
    seen = len(upstream.requests)
    refused(app, f"http://mixed.test:{upstream.server_port}/files/photo.jpg", 403,
            "'mixed.test'", "127.0.0.1", "loopback")
    assert len(upstream.requests) == seen


def test_redirect_to_a_host_not_allowed(make_importer, upstream):
    app = make_importer(url_import_hosts=("localhost",))
    target = upstream.base + "/files/photo.jpg"
    seen = len(upstream.requests)
    error = refused(app, f"{upstream.local}/redirect?to={target}", 403, "redirected",
                    "'127.0.0.1'", "url_import_hosts")
    assert target in error
    assert upstream.requests[seen:] == [f"/redirect?to={target}"]  # the target never asked


def test_redirect_to_a_private_address(make_importer, upstream):
    app = make_importer(url_import_hosts=("*",), url_import_private=False)
    # The first hop is refused already: the redirect check is the same function.
    refused(app, f"{upstream.base}/redirect?to=http://10.0.0.1/", 403, "private")


def test_redirects_followed_and_the_final_name_used(make_importer, upstream):
    app = make_importer()
    res = import_url(app, f"{upstream.local}/redirect?status=307&to={upstream.base}/files/photo.jpg",
                     201)
    assert res.json[0]["name"] == "photo.jpg"
    assert res.json[0]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    res = import_url(app, upstream.base + "/chain/5", 201)  # exactly the limit
    assert res.json[0]["name"] == "0"
    assert app.get("/files/0").body == b"end of chain"


def test_too_many_redirects(make_importer, upstream):
    app = make_importer()
    refused(app, upstream.base + "/chain/6", 502, "more than 5")


def test_redirect_to_another_scheme_is_a_bad_upstream(make_importer, upstream):
    app = make_importer()
    refused(app, upstream.base + "/redirect?to=file:///etc/passwd", 502, "redirected",
            "Only http and https", "'file'")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/",
                                 "javascript:alert(1)", "/files/photo.jpg", "", "http://",
                                 "http://127.0.0.1:99999/", "http://a b/"])
def test_bad_urls_are_400(make_importer, url):
    app = make_importer()
    refused(app, url, 400)


def test_userinfo_is_400(make_importer, upstream):
    app = make_importer()
    port = upstream.server_port
    seen = len(upstream.requests)
    refused(app, f"http://user:pw@127.0.0.1:{port}/files/photo.jpg", 400, "user name or password")
    refused(app, f"http://user@127.0.0.1:{port}/files/photo.jpg", 400, "user name or password")
    assert len(upstream.requests) == seen


# -- failures upstream, limits -----------------------------------------------------------


def test_upstream_404_is_502(make_importer, upstream):
    app = make_importer()
    refused(app, upstream.base + "/nothing-here", 502, "404")


def test_https_to_a_plain_http_server_is_502(make_importer, upstream):
    app = make_importer()
    refused(app, f"https://127.0.0.1:{upstream.server_port}/files/photo.jpg", 502, "TLS")


def test_cut_short_body_is_502_and_keeps_the_old_file(make_importer, upstream):
    app = make_importer()
    app.put("/files/keep.bin", b"old content", status=201)
    res = import_url(app, upstream.base + "/short", 502, name="keep.bin")
    assert "10 of 1000 bytes" in res.json["error"]
    assert listed(app) == ["keep.bin"]
    assert app.get("/files/keep.bin").body == b"old content"


def test_too_large_by_content_length(make_importer, upstream):
    app = make_importer(url_import_max_size=1000)
    refused(app, upstream.base + "/files/photo.jpg", 413, "url_import_max_size", "Content-Length")
    refused(app, upstream.base + "/announced-huge", 413, "1000000000")


@pytest.mark.parametrize("path", ["/stream/50000", "/chunked/50000"])
def test_too_large_while_streaming(make_importer, upstream, path):
    app = make_importer(url_import_max_size=20000)
    refused(app, upstream.base + path, 413, "url_import_max_size")
    # Under the limit the same responses are stored whole.
    assert import_url(app, upstream.base + path.replace("50000", "15000"), 201).json[0]["size"] == 15000


def test_max_upload_size_applies_too(make_importer, upstream):
    app = make_importer(max_size=1000)
    refused(app, upstream.base + "/files/photo.jpg", 413, "max_upload_size")
    refused(app, upstream.base + "/stream/5000", 413, "max_upload_size")


@pytest.mark.parametrize("path, what", [("/drip", "downloading"), ("/stall", "waiting")])
def test_time_limit(make_importer, upstream, path, what):
    app = make_importer(url_import_timeout=1.0)
    started = time.monotonic()
    refused(app, upstream.base + path, 504, "url_import_timeout", what)
    assert time.monotonic() - started < 4


# -- configuration -------------------------------------------------------------------------


def test_config_keys_from_environment():
    settings = load_settings(env={
        "FILESERVER_URL_IMPORT": "yes", "FILESERVER_URL_IMPORT_HOSTS": "a.org, *.b.org  c.org",
        "FILESERVER_URL_IMPORT_PRIVATE": "off", "FILESERVER_URL_IMPORT_MAX_SIZE": "5M",
        "FILESERVER_URL_IMPORT_TIMEOUT": "2.5"})
    assert settings.url_import is True
    assert settings.url_import_hosts == ("a.org", "*.b.org", "c.org")
    assert settings.url_import_private is False
    assert settings.url_import_max_size == 5 * 1024**2
    assert settings.url_import_timeout == 2.5
    defaults = load_settings(env={})
    assert (defaults.url_import, defaults.url_import_hosts, defaults.url_import_private) == \
        (False, (), False)


@pytest.mark.parametrize("key, value, message", [
    ("URL_IMPORT", "maybe", "not on/off"), ("URL_IMPORT_TIMEOUT", "0", "between 0 and"),
    ("URL_IMPORT_TIMEOUT", "soon", "not a number of seconds"),
    ("URL_IMPORT_HOSTS", "https://a.org/", "no scheme"),
])
def test_config_bad_values(key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(env={f"FILESERVER_{key}": value})
    assert str(info.value).startswith(key.lower() + ":")


def test_listing_shows_the_import_form_only_when_on(app, make_importer, upstream):
    assert 'name="url"' not in app.get("/files/", headers=HTML).text
    on = make_importer()
    page = on.get("/files/album/", headers=HTML)
    form = page.forms["import"]
    assert form.action == "/files/album/" and form.method.lower() == "post"
    form["url"] = upstream.base + "/files/photo.jpg"
    res = form.submit(headers=HTML, status=303)
    assert res.headers["Location"].endswith("/files/album/")
    assert listed(on) == ["album/photo.jpg"]


def test_imports_record_the_owner_and_respect_others_files(make_importer, upstream):
    app = make_importer(anonymous="read")
    accounts = app.app.config["fileserver.auth"].accounts
    accounts.add("ann", "writer", "ann-password")
    accounts.add("ben", "writer", "ben-password")
    ann = {"Authorization": "Basic " + base64.b64encode(b"ann:ann-password").decode()}
    ben = {"Authorization": "Basic " + base64.b64encode(b"ben:ben-password").decode()}
    url = upstream.base + "/files/photo.jpg"
    app.post("/files/", {"url": url}, status=401)  # anonymous may only read
    assert app.post("/files/", {"url": url}, headers=ann, status=201).json[0]["owner"] == "ann"
    res = app.post("/files/", {"url": url}, headers=ben, status=403)
    assert "belongs to ann" in res.json["error"]
    res = app.post("/files/", [("url", url)], headers=ben, upload_files=[], status=403)
    assert "belongs to ann" in res.json["error"]
    assert app.get("/files/photo.jpg").body == PAYLOAD
