"""The HTTP interface, through WebTest against create_app(), on every backend."""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import os
import re
from datetime import timedelta

import pytest
import webtest

from fileserver import Settings, create_app

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def put(app, name, body, status=None, **headers):
    return app.put(f"/files/{name}", body, headers=headers, status=status,
                   content_type=headers.pop("content_type", None) or "")


# -- PUT ------------------------------------------------------------------------------


def test_put_creates_then_replaces(app):
    data = os.urandom(70_000)
    res = app.put("/files/dir/a.bin", data, status=201)
    assert res.headers["Location"] == "http://localhost:80/files/dir/a.bin"
    assert res.json["sha256"] == hashlib.sha256(data).hexdigest()
    assert res.json["size"] == len(data)
    assert res.json["url"].endswith("/files/dir/a.bin")
    res = app.put("/files/dir/a.bin", b"new", status=200)
    assert "Location" not in res.headers
    assert app.get("/files/dir/a.bin").body == b"new"


def test_put_content_type_from_client_or_guessed(app):
    app.put("/files/x.dat", b"{}", headers={"Content-Type": "application/json"}, status=201)
    assert app.get("/files/x.dat").content_type == "application/json"
    app.put("/files/pic.png", b"png", status=201)  # WebTest sends no type here
    assert app.get("/files/pic.png").content_type == "image/png"
    # curl --data-binary sends form-urlencoded: not an opinion about the file.
    app.put("/files/y.txt", b"hi", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert app.get("/files/y.txt").headers["Content-Type"].startswith("text/plain")


def test_put_unicode_name_and_location_is_quoted(app):
    res = app.put("/files/%E6%97%A5%E6%9C%AC/%F0%9F%8E%89.txt", b"x", status=201)
    assert res.json["name"] == "日本/🎉.txt"
    assert res.headers["Location"].endswith("/files/%E6%97%A5%E6%9C%AC/%F0%9F%8E%89.txt")
    assert app.get("/files/%E6%97%A5%E6%9C%AC/%F0%9F%8E%89.txt").body == b"x"


@pytest.mark.parametrize("path", ["/files/%2e%2e/etc", "/files/a/%2e%2e/%2e%2e/b", "/files/a%00b",
                                  "/files/a%0Ab", "/files/folder/", "/files/a//b", "/files/a%5Cb"])
def test_bad_names_get_400_json(app, path):
    res = app.put(path, b"x", status=400)
    assert res.json["status"] == 400
    assert res.json["error"]
    assert app.get("/files/?format=json&format=json").json["files"] == []


def test_upload_over_limit_is_413_and_stores_nothing(make_app):
    app = make_app(max_size=1000)
    res = app.put("/files/big", b"x" * 1001, status=413)
    assert res.json == {"error": res.json["error"], "status": 413}
    assert "limit" in res.json["error"]
    app.post("/files/", upload_files=[("file", "big2", b"y" * 5000)], status=413)
    assert app.get("/files/?format=json").json["files"] == []


def test_truncated_body_is_400_and_stores_nothing(app):
    app.put("/files/keep", b"old")
    req = webtest.TestRequest.blank("/files/keep", method="PUT", body=b"short")
    req.environ["CONTENT_LENGTH"] = "1000"  # announces more than it sends
    res = app.do_request(req, status=400, expect_errors=True)
    assert "ended after" in res.json["error"]
    assert app.get("/files/keep").body == b"old"


# -- POST multipart ---------------------------------------------------------------------


def test_multipart_upload_of_several_files(app):
    res = app.post("/files/", upload_files=[("file", "a.txt", b"aaa"), ("file", "b.png", b"bbb")],
                   status=201)
    assert [f["name"] for f in res.json] == ["a.txt", "b.png"]
    assert res.json[1]["content_type"] == "image/png"
    assert app.get("/files/a.txt").body == b"aaa"


def test_multipart_into_folder_and_from_a_browser_form(app):
    res = app.post("/files/album/", upload_files=[("file", "c.jpg", b"ccc")], headers=HTML,
                   status=303)
    assert res.headers["Location"].endswith("/files/album/")
    assert app.get("/files/album/c.jpg").body == b"ccc"


def test_multipart_mistakes(app):
    app.post("/files/", {"x": "1"}, status=415)
    res = app.post("/files/", upload_files=[("other", "a.txt", b"a")], status=400)
    assert "file" in res.json["error"]
    app.post("/files/not-a-folder", upload_files=[("file", "a.txt", b"a")], status=400)
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.bin\"\r\n\r\n"
            b"partial data without the closing boundary")
    req = webtest.TestRequest.blank("/files/", method="POST", body=body,
                                    content_type="multipart/form-data; boundary=XX")
    res = app.do_request(req, status=400, expect_errors=True)
    assert "multipart" in res.json["error"]
    assert app.get("/files/?format=json").json["files"] == []


# -- GET, HEAD, conditional, range -----------------------------------------------------


@pytest.fixture
def stored(app):
    data = os.urandom(100_000)
    app.put("/files/docs/report%202026%20%C3%BC.bin", data)
    return app, "/files/docs/report%202026%20%C3%BC.bin", data


def test_get_headers_and_body(stored):
    app, url, data = stored
    res = app.get(url, status=200)
    assert res.body == data
    assert res.headers["Content-Length"] == str(len(data))
    assert res.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert email.utils.parsedate_to_datetime(res.headers["Last-Modified"])
    assert res.headers["Accept-Ranges"] == "bytes"
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert res.headers["Content-Disposition"].startswith("inline;")


def test_download_disposition_has_rfc5987_name(stored):
    app, url, _ = stored
    res = app.get(url + "?download")
    assert res.headers["Content-Disposition"] == (
        "attachment; filename=\"report 2026 _.bin\"; filename*=UTF-8''report%202026%20%C3%BC.bin")


def test_head_has_headers_but_no_body(stored):
    app, url, data = stored
    res = app.head(url)
    assert res.body == b""
    assert res.headers["Content-Length"] == str(len(data))
    assert res.headers["ETag"] == app.get(url).headers["ETag"]


def test_conditional_get(stored):
    app, url, _ = stored
    first = app.get(url)
    tag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert app.get(url, headers={"If-None-Match": tag}, status=304).body == b""
    assert app.get(url, headers={"If-None-Match": f'"other", W/{tag}'}, status=304)
    assert app.get(url, headers={"If-None-Match": '"other"'}, status=200)
    assert app.get(url, headers={"If-Modified-Since": modified}, status=304)
    earlier = email.utils.parsedate_to_datetime(modified) - timedelta(seconds=5)
    app.get(url, headers={"If-Modified-Since": email.utils.format_datetime(earlier, usegmt=True)},
            status=200)
    res = app.get(url, headers={"If-None-Match": tag}, status=304)
    assert res.headers["ETag"] == tag


@pytest.mark.parametrize("header, start, end", [
    ("bytes=0-99", 0, 100), ("bytes=500-", 500, 100_000), ("bytes=-300", 99_700, 100_000),
    ("bytes=99999-99999", 99_999, 100_000), ("bytes=10-999999", 10, 100_000),
])
def test_single_range(stored, header, start, end):
    app, url, data = stored
    res = app.get(url, headers={"Range": header}, status=206)
    assert res.body == data[start:end]
    assert res.headers["Content-Range"] == f"bytes {start}-{end - 1}/100000"
    assert res.headers["Content-Length"] == str(end - start)


@pytest.mark.parametrize("header", ["bytes=100000-", "bytes=200000-300000", "bytes=-0"])
def test_unsatisfiable_range(stored, header):
    app, url, _ = stored
    res = app.get(url, headers={"Range": header}, status=416)
    assert res.headers["Content-Range"] == "bytes */100000"
    assert res.json["status"] == 416


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=5-2"])
def test_ignored_ranges_send_everything(stored, header):
    app, url, data = stored
    assert app.get(url, headers={"Range": header}, status=200).body == data


def test_if_range(stored):
    app, url, data = stored
    tag = app.get(url).headers["ETag"]
    assert app.get(url, headers={"Range": "bytes=0-9", "If-Range": tag}, status=206).body == data[:10]
    assert app.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'}, status=200).body == data


def test_range_offset_reaches_the_store(make_store):
    store = make_store()
    calls = []
    original = store._open

    def spy(name, start, end):
        calls.append((start, end))
        return original(name, start, end)

    store._open = spy
    app = webtest.TestApp(create_app(Settings(), store=store, catchall=False))
    app.put("/files/f", os.urandom(1_000_000))
    app.get("/files/f", headers={"Range": "bytes=999000-"})
    assert calls == [(999_000, 1_000_000)]


@pytest.mark.parametrize("name, ctype", [("page.html", "text/html"), ("pic.svg", "image/svg+xml")])
def test_active_content_is_never_rendered_inline(app, name, ctype):
    app.put(f"/files/{name}", b"<script>alert(1)</script>")
    res = app.get(f"/files/{name}")
    assert res.content_type == ctype
    assert res.headers["Content-Disposition"].startswith("attachment;")
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in res.headers["Content-Security-Policy"]


def test_missing_file_is_404_json_for_api_and_html_for_browsers(app):
    res = app.get("/files/nope", status=404)
    assert res.json == {"error": "No file named 'nope'.", "status": 404}
    page = app.get("/files/nope", headers=HTML, status=404)
    assert page.content_type == "text/html"
    assert "No file named" in page.text


# -- DELETE -----------------------------------------------------------------------------


def test_delete(app):
    app.put("/files/d", b"x")
    assert app.delete("/files/d", status=204).body == b""
    app.get("/files/d", status=404)
    assert app.delete("/files/d", status=404).json["status"] == 404


def test_delete_button_without_javascript(app):
    app.put("/files/album/d", b"x")
    res = app.post("/files/album/d", {"_method": "DELETE"}, headers=HTML, status=303)
    assert res.headers["Location"].endswith("/files/album/")
    app.get("/files/album/d", status=404)


def test_cross_site_writes_are_refused(app):
    app.put("/files/keep", b"x")
    res = app.post("/files/keep", {"_method": "DELETE"},
                   headers={"Origin": "http://evil.example", **HTML}, status=403)
    assert "Cross-site" in res.text
    app.put("/files/x", b"x", headers={"Origin": "http://evil.example"}, status=403)
    app.delete("/files/keep", headers={"Sec-Fetch-Site": "cross-site"}, status=403)
    app.put("/files/y", b"y", headers={"Origin": "http://localhost:80"}, status=201)
    assert app.get("/files/keep").body == b"x"


# -- listings ---------------------------------------------------------------------------


def test_listing_is_html_unless_json_or_text_is_asked_for(app):
    app.put("/files/a.txt", b"a")
    app.put("/files/sub/b.txt", b"b")
    for accept in (None, "*/*", "text/html", "application/json;q=0.5, text/html",
                   "text/*, application/json;q=0.9", "image/png"):
        res = app.get("/files/", headers={"Accept": accept} if accept else {})
        assert res.content_type == "text/html", accept
        assert res.headers["Vary"] == "Accept"
    for accept in ("application/json", "text/html;q=0.8, application/json",
                   "application/*", "text/plain;q=0.1, application/json;q=0.2"):
        res = app.get("/files/", headers={"Accept": accept})
        assert res.content_type == "application/json", accept
    res = app.get("/files/", headers={"Accept": "application/json"})
    assert [f["name"] for f in res.json["files"]] == ["a.txt", "sub/b.txt"]
    assert res.json["next"] is None
    assert app.get("/files/?format=json", headers=HTML).content_type == "application/json"
    page = app.get("/files/", headers=HTML)
    assert 'href="/files/sub/"' in page.text and "a.txt" in page.text
    inner = app.get("/files/sub/", headers=HTML)
    assert "b.txt" in inner.text and "a.txt" not in inner.text
    res = app.get("/files/?format=xml", status=400)
    assert "format" in res.json["error"]


def test_text_listing_is_one_name_per_line_folders_with_a_slash(app):
    for name in ("a.txt", "sub/b.txt", "sub/deep/c.txt", "z z.bin"):
        app.put("/files/" + name, b"x")
    res = app.get("/files/", headers={"Accept": "text/plain"})
    assert res.content_type == "text/plain" and res.charset == "utf-8"
    assert res.text == "sub/\na.txt\nz z.bin\n"
    assert app.get("/files/sub/?format=text").text == "deep/\nb.txt\n"


def test_html_listing_has_one_link_url_per_entry(app):
    for name in ("a.txt", "sub/b.txt", "sub/c.txt"):
        app.put("/files/" + name, b"x")
    page = app.get("/files/")
    rows = re.findall(r"<tr class=\"(?:file|folder)\".*?</tr>", page.text, re.S)
    assert len(rows) == 2
    for row in rows:
        assert len(set(re.findall(r'href="([^"]*)"', row))) == 1, row
    assert re.search(r'<a class="download" href="/files/a.txt" download="a.txt">', page.text)
    assert "?download" not in page.text


def test_listing_validators_and_304(app):
    app.put("/files/a.txt", b"a")
    for fmt in ("html", "json", "text"):
        first = app.get(f"/files/?format={fmt}")
        assert first.headers["ETag"].startswith('"') and "no-cache" in first.headers["Cache-Control"]
        again = app.get(f"/files/?format={fmt}",
                        headers={"If-None-Match": first.headers["ETag"]}, status=304)
        assert again.body == b"" and again.headers["ETag"] == first.headers["ETag"]
    before = app.get("/files/?format=json").headers["ETag"]
    app.put("/files/b.txt", b"b")
    app.get("/files/?format=json", headers={"If-None-Match": before}, status=200)


def test_folder_urls_without_the_slash_redirect_else_404(app):
    app.put("/files/album/one.jpg", b"x")
    assert app.get("/files", status=308).headers["Location"].endswith("/files/")
    res = app.get("/files/album", status=308)
    assert res.headers["Location"].endswith("/files/album/")
    assert app.get("/files/album?format=text", status=308).headers["Location"].endswith(
        "/files/album/?format=text")
    app.head("/files/album", status=308)
    app.get("/files/albu", status=404)
    app.get("/files/album/one", status=404)


def test_private_files_are_neither_listed_nor_reachable(store):
    app = webtest.TestApp(create_app(Settings(), store=store, catchall=False))
    for name in ("a.txt", ".fileserver/mosaic/tiles/t.jpg", ".fileserver/x", "z.txt"):
        store.put(name, io.BytesIO(b"x"))
    assert [f["name"] for f in app.get("/files/?format=json").json["files"]] == ["a.txt", "z.txt"]
    assert app.get("/files/?format=text").text == "a.txt\nz.txt\n"
    names, url = [], "/files/?format=json&limit=1"
    while url:
        page = app.get(url).json
        names += [f["name"] for f in page["files"]]
        url = page["next"]
    assert names == ["a.txt", "z.txt"]
    assert app.get("/files/?format=json&prefix=.file").json["files"] == []
    app.get("/files/.fileserver/x", status=404)
    app.get("/files/.fileserver/", status=404)
    app.get("/files/.fileserver", status=404)
    app.put("/files/.fileserver/x", b"y", status=403)
    app.delete("/files/.fileserver/x", status=403)
    app.post("/files/.fileserver/", upload_files=[("file", "t.jpg", b"y")], status=403)
    assert store.open(".fileserver/x").read() == b"x"


def test_static_assets_have_quoted_etags_and_answer_304(app):
    first = app.get("/static/style.css")
    tag = first.headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    app.get("/static/style.css", headers={"If-None-Match": tag}, status=304)
    app.get("/static/style.css", headers={"If-None-Match": f'"other", W/{tag}'}, status=304)
    app.get("/static/style.css", headers={"If-None-Match": '"other"'}, status=200)
    app.get("/static/../fileserver/app.py", status=404)
    app.get("/static/nothing.css", status=404)


def test_listing_prefix_delimiter_and_pagination(app):
    for i in range(7):
        app.put(f"/files/img/{i}.png", b"x")
    app.put("/files/img/old/9.png", b"x")
    app.put("/files/other", b"x")
    assert len(app.get("/files/?prefix=img/&format=json").json["files"]) == 8
    inner = app.get("/files/img/?prefix=3&format=json").json
    assert [f["name"] for f in inner["files"]] == ["img/3.png"]
    folded = app.get("/files/img/?delimiter=/&format=json").json
    assert folded["folders"] == ["img/old/"] and len(folded["files"]) == 7
    names, url = [], "/files/?prefix=img/&limit=3&format=json"
    while url:
        page = app.get(url).json
        names += [f["name"] for f in page["files"]]
        url = page["next"]
    assert names == [f"img/{i}.png" for i in range(7)] + ["img/old/9.png"]
    app.get("/files/?limit=x", status=400)


def test_html_pages_use_only_our_own_assets(app):
    app.put("/files/a.txt", b"a")
    page = app.get("/", headers=HTML).follow(headers=HTML)
    links = re.findall(r'(?:src|href|action)="([^"]*)"', page.text)
    assert links and all(link.startswith("/") for link in links), links
    assert app.get("/static/style.css").content_type == "text/css"
    assert b"XMLHttpRequest" in app.get("/static/upload.js").body
    form = page.forms["upload"]
    assert form.method.lower() == "post" and form.enctype == "multipart/form-data"
    assert form.fields["file"][0].attrs.get("multiple") is not None


def test_listing_html_escapes_names(app):
    app.put("/files/%3Cimg%20src=x%20onerror=alert(1)%3E.txt", b"x")
    page = app.get("/files/", headers=HTML)
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;.txt" in page.text


def test_json_error_shape_for_unknown_route(app):
    res = app.get("/nowhere", status=404)
    assert json.loads(res.body) == {"error": res.json["error"], "status": 404}
