"""The listing's pages and forms through WebTest (no JavaScript), on every
backend: deleting asks first, an upload onto a taken name keeps both or
replaces (the form's choice, or ?exists= on PUT), and the columns sort."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone

import pytest
import webtest

from fileserver import Settings, create_app
from fileserver.files import numbered_name

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def names_listed(page) -> list[str]:
    return [row["data-name"] for row in page.html.select("#files tr.file")]


def forms_of(page, action: str, method: str) -> list[webtest.forms.Form]:
    unique = {id(f): f for f in page.forms.values()}.values()
    return [f for f in unique if f.action == action and f.method.lower() == method]


# -- delete asks first ----------------------------------------------------------------


def test_delete_leads_to_a_confirmation_page_then_deletes(app):
    app.put("/files/album/a b.txt", b"x")
    app.put("/files/album/keep.txt", b"k")
    listing = app.get("/files/album/", headers=HTML)
    [ask] = forms_of(listing, "/files/album/a%20b.txt", "get")
    assert list(ask.fields) == ["delete", None]  # None: the button
    row = listing.html.select_one('tr.file[data-name="album/a b.txt"]')
    assert {a["href"] for a in row.select("a")} == {"/files/album/a%20b.txt"}

    page = ask.submit(headers=HTML, status=200)
    assert page.content_type == "text/html"
    assert page.html.select_one("h1").get_text() == "Delete album/a b.txt?"
    assert app.get("/files/album/a%20b.txt").body == b"x"  # asking deletes nothing
    [confirm] = forms_of(page, "/files/album/a%20b.txt", "post")
    assert list(confirm.fields) == ["_csrf", "_method", None]  # None: the button
    assert confirm["_method"].value == "DELETE"
    assert page.html.select_one("a.cancel")["href"] == "/files/album/"

    done = confirm.submit(headers=HTML, status=303)
    assert done.headers["Location"].endswith("/files/album/")
    app.get("/files/album/a%20b.txt", status=404)
    assert names_listed(done.follow(headers=HTML)) == ["album/keep.txt"]


def test_the_confirmation_carries_the_session_csrf_token(store):
    app = webtest.TestApp(create_app(Settings(), store=store, catchall=False))
    app.app.config["fileserver.auth"].accounts.add("ann", "writer", "ann-password")
    login = app.get("/login", headers=HTML).forms[0]
    login["name"], login["password"] = "ann", "ann-password"
    login.submit(headers=HTML, status=303)
    page = app.get("/files/", headers=HTML)
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text).group(1)
    form = page.forms["upload"]
    form["file"] = [("mine.txt", b"m")]
    form.submit(headers=HTML, status=303)
    [ask] = forms_of(app.get("/files/", headers=HTML), "/files/mine.txt", "get")
    [confirm] = forms_of(ask.submit(headers=HTML), "/files/mine.txt", "post")
    assert confirm["_csrf"].value == csrf
    confirm["_csrf"].force_value("0" * 32)
    confirm.submit(headers=HTML, status=403)  # a forged form without the token
    confirm["_csrf"].force_value(csrf)
    confirm.submit(headers=HTML, status=303)
    app.get("/files/mine.txt", status=404)
    # another's file: refused before asking
    store.put("theirs.txt", io.BytesIO(b"t"), owner="someone")
    page = app.get("/files/theirs.txt?delete", headers=HTML, status=403)
    assert "belongs to someone" in page.text


def test_the_confirmation_page_of_a_missing_file_is_404(app):
    page = app.get("/files/gone.txt?delete", headers=HTML, status=404)
    assert "No file named" in page.text


# -- an upload onto a taken name -------------------------------------------------------


@pytest.mark.parametrize("name, n, numbered", [
    ("a.txt", 1, "a (1).txt"), ("docs/photo.jpg", 2, "docs/photo (2).jpg"),
    ("docs/README", 1, "docs/README (1)"), (".env", 3, ".env (3)"),
    ("v1.2/x.tar.gz", 1, "v1.2/x.tar (1).gz")])
def test_numbered_names(name, n, numbered):
    assert numbered_name(name, n) == numbered


def test_the_page_form_keeps_both_by_default(app):
    app.put("/files/docs/a.txt", b"old")
    form = app.get("/files/docs/", headers=HTML).forms["upload"]
    # the CSRF token first (checked before files stream in), then the choice
    assert list(form.fields)[:3] == ["_csrf", "exists", "file"]
    assert form["exists"].value == "keep"
    assert [o[0] for o in form["exists"].options] == ["keep", "replace"]
    for body in (b"new 1", b"new 2"):
        form = app.get("/files/docs/", headers=HTML).forms["upload"]
        form["file"] = [("a.txt", body)]  # a list: the input takes several
        assert form.submit(headers=HTML, status=303).headers["Location"].endswith("/files/docs/")
    assert app.get("/files/docs/a.txt").body == b"old"
    assert app.get("/files/docs/a%20%281%29.txt").body == b"new 1"
    assert app.get("/files/docs/a%20%282%29.txt").body == b"new 2"
    form = app.get("/files/docs/", headers=HTML).forms["upload"]
    form["exists"] = "replace"
    form["file"] = [("a.txt", b"replaced")]
    form.submit(headers=HTML, status=303)
    assert app.get("/files/docs/a.txt").body == b"replaced"
    assert names_listed(app.get("/files/docs/", headers=HTML)) == [
        "docs/a (1).txt", "docs/a (2).txt", "docs/a.txt"]


def test_multipart_exists_field_and_its_default(app):
    app.put("/files/b.bin", b"0")
    res = app.post("/files/", [("exists", "keep")],
                   upload_files=[("file", "b.bin", b"1"), ("file", "b.bin", b"2")], status=201)
    assert [f["name"] for f in res.json] == ["b (1).bin", "b (2).bin"]
    # no field (curl -F): replace, as before
    res = app.post("/files/", upload_files=[("file", "b.bin", b"3")], status=201)
    assert [f["name"] for f in res.json] == ["b.bin"]
    assert app.get("/files/b.bin").body == b"3"
    res = app.post("/files/", [("exists", "rename")], upload_files=[("file", "c", b"c")],
                   status=400)
    assert "exists" in res.json["error"] and "'rename'" in res.json["error"]
    app.get("/files/c", status=404)


def test_put_exists_keep_lets_the_server_choose_the_name(app):
    res = app.put("/files/p.jpg?exists=keep", b"first", status=201)
    assert res.json["name"] == "p.jpg"  # a free name is used as it is
    res = app.put("/files/p.jpg?exists=keep", b"second", status=201)
    assert res.json["name"] == "p (1).jpg"
    assert res.headers["Location"].endswith("/files/p%20%281%29.jpg")
    assert app.put("/files/p.jpg?exists=replace", b"third", status=200).json["name"] == "p.jpg"
    assert app.get("/files/p.jpg").body == b"third"
    assert app.get("/files/p%20%281%29.jpg").body == b"second"
    res = app.put("/files/p.jpg?exists=maybe", b"x", status=400)
    assert "exists" in res.json["error"]


# -- sorting ---------------------------------------------------------------------------


@pytest.fixture
def sortable(app):
    """Files of different sizes and times (stored directly, to set the times),
    and two folders."""
    store = app.app.config["fileserver.store"]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for name, size, age in (("b.txt", 30, 1), ("a.txt", 10, 3), ("c.txt", 20, 2),
                            ("sub/x", 1, 0), ("zed/y", 1, 0)):
        when = now - timedelta(days=age)
        store.put(name, io.BytesIO(b"x" * size), created=when, modified=when)
    return app


def test_sort_by_size_descending(sortable):
    page = sortable.get("/files/?sort=size&order=desc", headers=HTML)
    assert names_listed(page) == ["b.txt", "c.txt", "a.txt"]
    # folders first, in the same direction
    assert [a.get_text() for a in page.html.select("#files tr.folder a")] == ["zed/", "sub/"]
    rows = page.html.select("#files tbody tr")
    assert [r["class"][0] for r in rows] == ["folder", "folder", "file", "file", "file"]
    assert page.html.select_one("th.size")["aria-sort"] == "descending"
    assert page.html.select_one("th.name").get("aria-sort") is None


def test_sort_by_modified_and_name_and_the_header_forms(sortable):
    page = sortable.get("/files/?sort=modified", headers=HTML)
    assert names_listed(page) == ["a.txt", "c.txt", "b.txt"]
    assert page.html.select_one("th.modified")["aria-sort"] == "ascending"
    # the current column's button turns the order round; the others start ascending
    again = forms_of(page, "/files/", "get")
    by_key = {f.fields["sort"][0].value_if_submitted(): f for f in again if "sort" in f.fields}
    assert set(by_key) == {"name", "size", "modified"}
    assert by_key["modified"]["order"].value == "desc"
    assert by_key["size"]["order"].value == "asc"
    page = by_key["modified"].submit("sort", headers=HTML)
    assert names_listed(page) == ["b.txt", "c.txt", "a.txt"]
    assert names_listed(sortable.get("/files/?sort=name&order=desc", headers=HTML)) == [
        "c.txt", "b.txt", "a.txt"]
    assert names_listed(sortable.get("/files/", headers=HTML)) == ["a.txt", "b.txt", "c.txt"]
    assert sortable.get("/files/", headers=HTML).html.select_one("th.name")["aria-sort"] == (
        "ascending")


def test_sort_keeps_the_filter(sortable):
    page = sortable.get("/files/?prefix=b&sort=size", headers=HTML)
    form = [f for f in forms_of(page, "/files/", "get") if "sort" in f.fields][0]
    assert form["prefix"].value == "b"
    assert names_listed(form.submit("sort", headers=HTML)) == ["b.txt"]


@pytest.mark.parametrize("query, parameter", [("sort=colour", "sort"),
                                              ("sort=size&order=up", "order")])
def test_unknown_sort_is_400_naming_the_parameter(sortable, query, parameter):
    res = sortable.get(f"/files/?{query}", headers={"Accept": "text/html"}, status=400)
    assert f"query parameter {parameter} " in res.text


def links_under(page, folder: str) -> list[str]:
    hrefs = re.findall(r'<a\s[^>]*href="([^"]*)"', page.text)
    assert "/" not in hrefs  # fsspec takes it for the folder itself
    assert not [h for h in hrefs if "?" in h]
    return sorted({h for h in hrefs if h.startswith(folder)})


def test_the_links_of_a_listing_are_its_entries(sortable):
    """Mirroring tools (wget -r, fsspec, rclone) read every href of a listing:
    sorting and delete are forms, and the folder itself is no link."""
    page = sortable.get("/files/?sort=size", headers=HTML)
    assert links_under(page, "/files/") == [
        "/files/a.txt", "/files/b.txt", "/files/c.txt", "/files/sub/", "/files/zed/"]
    page = sortable.get("/files/sub/", headers=HTML)
    assert links_under(page, "/files/sub/") == ["/files/sub/x"]
    assert page.html.select_one('nav.crumbs [aria-current="page"]').get_text() == "sub"
