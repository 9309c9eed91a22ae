"""Accounts, roles, sessions, CSRF and ownership, through WebTest on every backend."""

from __future__ import annotations

import base64
import io
import re

import pytest
import webtest
from PIL import Image

from fileserver import Settings, create_app
from fileserver.accounts import Accounts
from fileserver.auth import COOKIE
from fileserver.errors import ConfigError

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "root": "root-password",
             "rita": "rita-password"}
ROLES = {"alice": "writer", "bob": "writer", "root": "admin", "rita": "reader"}
HTML = {"Accept": "text/html"}


def basic(name: str, password: str | None = None) -> dict[str, str]:
    pair = f"{name}:{password or PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def make(store, **settings) -> webtest.TestApp:
    return webtest.TestApp(create_app(Settings(**settings), store=store, catchall=False))


@pytest.fixture
def users_app(store) -> webtest.TestApp:
    """An app whose backend has four users; anonymous is unset (so: none)."""
    app = make(store)
    accounts = app.app.config["fileserver.auth"].accounts
    for name, role in ROLES.items():
        accounts.add(name, role, PASSWORDS[name])
    return app


def accounts_of(app) -> Accounts:
    return app.app.config["fileserver.auth"].accounts


# -- the anonymous policy -------------------------------------------------------------


def test_loopback_without_users_lets_anonymous_write(store):
    app = make(store)
    assert app.put("/files/a.txt", b"hi", status=201).json["owner"] is None
    app.delete("/files/a.txt", status=204)


def test_with_users_anonymous_gets_401_and_a_challenge(users_app):
    res = users_app.put("/files/a.txt", b"hi", status=401)
    assert res.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert "curl -u NAME" in res.json["error"]
    users_app.get("/files/", status=401)
    # a browser asking for a page goes to the login form instead
    res = users_app.get("/files/?prefix=x", headers=HTML, status=303)
    assert res.headers["Location"].endswith("/login?next=/files/%3Fprefix%3Dx")
    assert users_app.get("/login", headers=HTML).status_int == 200
    assert users_app.get("/static/style.css").status_int == 200


@pytest.mark.parametrize("policy, read, write", [("none", 401, 401), ("read", 200, 401),
                                                 ("write", 200, 201)])
def test_anonymous_setting(store, policy, read, write):
    app = make(store, anonymous=policy)
    accounts_of(app).add("alice", "writer", PASSWORDS["alice"])
    app.get("/files/", status=read)
    app.put("/files/a.txt", b"hi", status=write)


def test_a_public_address_without_users_refuses_to_start(make_store):
    with pytest.raises(ConfigError, match="anonymous: .*0.0.0.0.*not loopback.*user add"):
        make(make_store(), host="0.0.0.0")
    make(make_store(), host="0.0.0.0", anonymous="read").get("/files/", status=200)
    store = make_store()
    make(store).app.config["fileserver.auth"].accounts.add("root", "admin", PASSWORDS["root"])
    app = make(store, host="0.0.0.0")
    app.get("/files/", status=401)  # unset with users: nothing without credentials
    app.get("/files/", headers=basic("root"), status=200)


# -- Basic, Bearer and roles ---------------------------------------------------------------


def test_basic_auth_records_the_owner(users_app):
    res = users_app.put("/files/a.txt", b"hi", headers=basic("alice"), status=201)
    assert res.json["owner"] == "alice"
    assert users_app.get("/files/a.txt", headers=basic("rita")).body == b"hi"
    res = users_app.put("/files/a.txt", b"x", headers=basic("alice", "wrong-password"), status=401)
    assert res.json["error"] == "Wrong user name or password."
    users_app.put("/files/a.txt", b"x", headers=basic("nobody", "whatever1"), status=401)


def test_a_reader_may_not_write(users_app):
    res = users_app.put("/files/r.txt", b"x", headers=basic("rita"), status=403)
    assert "rita is a reader" in res.json["error"]
    users_app.get("/files/r.txt", headers=basic("rita"), status=404)


def test_tokens_from_the_api_work_until_revoked(users_app):
    res = users_app.post("/account/tokens", {"label": "backup"}, headers=basic("alice"), status=201)
    token, token_id = res.json["token"], res.json["id"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert users_app.put("/files/t.txt", b"t", headers=bearer, status=201).json["owner"] == "alice"
    listed = users_app.get("/account", headers=bearer).json
    assert listed["name"] == "alice" and listed["tokens"] == [
        {"id": token_id, "label": "backup", "created": listed["tokens"][0]["created"]}]
    res = users_app.post(f"/account/tokens/{token_id}", headers=bearer, status=405)
    assert res.headers["Allow"] == "DELETE" and "_method=DELETE" in res.json["error"]
    users_app.delete(f"/account/tokens/{token_id}", headers=basic("bob"), status=404)
    users_app.delete(f"/account/tokens/{token_id}", headers=bearer, status=204)
    users_app.get("/files/t.txt", headers=bearer, status=401)
    users_app.get("/files/t.txt", headers={"Authorization": "Bearer " + token[:-1] + "x"},
                  status=401)


def test_passwords_and_tokens_are_stored_only_as_hashes(users_app):
    accounts = accounts_of(users_app)
    _, token = accounts.new_token("alice")
    stored = repr([d.body for d in accounts.documents.all("accounts")])
    assert PASSWORDS["alice"] not in stored and token.split(".")[1] not in stored
    assert accounts.get("alice").password.startswith("scrypt$16384$8$1$")


# -- ownership --------------------------------------------------------------------------------


def test_only_the_owner_or_an_admin_replaces_or_deletes(users_app):
    users_app.put("/files/doc.txt", b"alice's", headers=basic("alice"), status=201)
    res = users_app.put("/files/doc.txt", b"bob's", headers=basic("bob"), status=403)
    assert "belongs to alice" in res.json["error"]
    users_app.delete("/files/doc.txt", headers=basic("bob"), status=403)
    users_app.post("/files/doc.txt", {"_method": "DELETE"}, headers=basic("bob"), status=403)
    users_app.post("/files/", upload_files=[("file", "doc.txt", b"bob's")],
                   headers=basic("bob"), status=403)
    assert users_app.get("/files/doc.txt", headers=basic("bob")).body == b"alice's"
    # an admin may, and the file stays alice's
    res = users_app.put("/files/doc.txt", b"fixed", headers=basic("root"), status=200)
    assert res.json["owner"] == "alice"
    users_app.put("/files/doc.txt", b"v2", headers=basic("alice"), status=200)
    users_app.delete("/files/doc.txt", headers=basic("root"), status=204)


def test_anonymous_files_are_anyones_who_may_write(store):
    app = make(store, anonymous="write")
    app.put("/files/shared.txt", b"anon", status=201)
    accounts_of(app).add("bob", "writer", PASSWORDS["bob"])
    app.put("/files/other.txt", b"anon", status=201)
    app.put("/files/other.txt", b"anon 2", status=200)
    # a user who replaces an unowned file makes it theirs: its content is now theirs
    assert app.put("/files/shared.txt", b"bob", headers=basic("bob")).json["owner"] == "bob"
    res = app.delete("/files/shared.txt", status=401)  # anonymous may write, but not bob's
    assert "belongs to bob" in res.json["error"]
    app.delete("/files/other.txt", status=204)


def test_owner_me_lists_ones_own_files(users_app):
    for i in range(5):
        users_app.put(f"/files/mix/a{i}.txt", b"a", headers=basic("alice"))
        users_app.put(f"/files/mix/b{i}.txt", b"b", headers=basic("bob"))
    res = users_app.get("/files/?owner=me&limit=3&format=json", headers=basic("alice")).json
    assert [f["name"] for f in res["files"]] == ["mix/a0.txt", "mix/a1.txt", "mix/a2.txt"]
    res = users_app.get(res["next"], headers=basic("alice")).json
    assert [f["name"] for f in res["files"]] == ["mix/a3.txt", "mix/a4.txt"] and not res["next"]
    res = users_app.get("/files/?owner=bob&format=json", headers=basic("rita")).json
    assert {f["owner"] for f in res["files"]} == {"bob"} and len(res["files"]) == 5
    assert users_app.get("/files/?owner=me&format=json", headers=basic("rita")).json["files"] == []
    page = users_app.get("/files/?owner=me", headers={**basic("alice"), **HTML}).text
    assert "a4.txt" in page and "b0.txt" not in page


def test_anonymous_owner_me_is_401(store):
    make(store).get("/files/?owner=me", status=401)


def _tile_zip() -> bytes:
    import zipfile

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for i, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
            image = io.BytesIO()
            Image.new("RGB", (32, 32), colour).save(image, "PNG")
            archive.writestr(f"t{i}.png", image.getvalue())
    return data.getvalue()


def test_only_the_owner_or_an_admin_deletes_a_tile(users_app):
    res = users_app.post("/mosaic/tiles", _tile_zip(), headers=basic("alice"),
                         content_type="application/zip", status=201)
    first, second = res.json["tiles"]
    assert users_app.get(f"/mosaic/tiles/{first}/image", headers=basic("bob")).status_int == 200
    res = users_app.post(f"/mosaic/tiles/{first}", headers=basic("alice"), status=405)
    assert res.headers["Allow"] == "DELETE" and "Delete a tile with DELETE" in res.json["error"]
    res = users_app.delete(f"/mosaic/tiles/{first}", headers=basic("bob"), status=403)
    assert "belongs to alice" in res.json["error"]
    users_app.delete(f"/mosaic/tiles/{first}", headers=basic("alice"), status=204)
    users_app.delete(f"/mosaic/tiles/{second}", headers=basic("root"), status=204)
    assert users_app.get("/mosaic/tiles", headers=basic("bob")).json["count"] == 0


# -- the login page, the session cookie and CSRF --------------------------------------------


def login(app, name: str) -> str:
    """Log in through the form; returns the CSRF token the pages carry."""
    form = app.get("/login?next=/files/", headers=HTML).forms[0]
    form["name"], form["password"] = name, PASSWORDS[name]
    res = form.submit(headers=HTML, status=303)
    assert res.headers["Location"].endswith("/files/")
    cookie = res.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
    page = app.get("/files/", headers=HTML).text
    assert f">{name}</a> ({ROLES[name]})" in page
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)


def test_session_writes_need_the_csrf_token(users_app):
    csrf = login(users_app, "alice")
    res = users_app.put("/files/s.txt", b"no token", status=403)
    assert "CSRF" in res.json["error"]
    res = users_app.put("/files/s.txt", b"with", headers={"X-CSRF-Token": csrf}, status=201)
    assert res.json["owner"] == "alice"
    # a multipart form: the token must be its first field
    res = users_app.post("/files/", [("_csrf", csrf)], upload_files=[("file", "m.txt", b"m")],
                         status=201)
    assert res.json[0]["owner"] == "alice"
    res = users_app.post("/files/", upload_files=[("file", "x.txt", b"x")], status=403)
    users_app.post("/files/", [("_csrf", "0" * 32)], upload_files=[("file", "x.txt", b"x")],
                   status=403)
    users_app.get("/files/x.txt", status=404)
    # the listing's delete button asks first; the confirmation's form carries it
    page = users_app.get("/files/", headers=HTML)
    ask = [f for f in page.forms.values() if f.action == "/files/m.txt"][0]
    delete = [f for f in ask.submit(headers=HTML).forms.values()
              if f.action == "/files/m.txt" and f.method.lower() == "post"][0]
    assert delete["_csrf"].value == csrf
    delete.submit(headers=HTML, status=303)
    users_app.get("/files/m.txt", status=404)
    users_app.post("/files/s.txt", {"_method": "DELETE"}, status=403)


def test_logout_and_password_change_end_the_session(users_app):
    csrf = login(users_app, "alice")
    users_app.post("/logout", {"_csrf": csrf}, headers=HTML, status=303)
    users_app.get("/account", status=401)
    login(users_app, "alice")
    users_app.get("/account", status=200)
    accounts_of(users_app).set_password("alice", "a-new-password")
    users_app.get("/account", status=401)


def test_login_refuses_wrong_passwords_and_open_redirects(users_app):
    res = users_app.post("/login", {"name": "alice", "password": "nope-nope"}, headers=HTML,
                         status=401)
    assert "Wrong user name or password." in res.text and COOKIE not in res.headers.get(
        "Set-Cookie", "")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        res = users_app.post("/login", {"name": "bob", "password": PASSWORDS["bob"],
                                        "next": target}, headers=HTML, status=303)
        assert res.headers["Location"].endswith("://localhost:80/files/")


def test_the_account_page_makes_and_revokes_tokens(users_app):
    csrf = login(users_app, "bob")
    page = users_app.get("/account", headers=HTML)
    form = [f for f in page.forms.values() if f.action == "/account/tokens"][0]
    form["label"] = "laptop"
    res = form.submit(headers=HTML, status=201)
    token = res.html.find(id="new-token").text
    assert users_app.get("/account", headers={"Authorization": f"Bearer {token}"}).json[
        "name"] == "bob"
    revoke = [f for f in res.forms.values() if f.action.startswith("/account/tokens/")][0]
    assert revoke["_csrf"].value == csrf
    revoke.submit(headers=HTML, status=303)
    users_app.get("/account", headers={"Authorization": f"Bearer {token}"}, status=401)


# -- guessing ---------------------------------------------------------------------------------


def test_repeated_failures_from_one_address_are_slowed_down(users_app):
    for _ in range(5):
        users_app.get("/files/", headers=basic("alice", "guess-guess"), status=401)
    res = users_app.get("/files/", headers=basic("alice"), status=429)  # even the right one
    assert int(res.headers["Retry-After"]) >= 1
    res = users_app.post("/login", {"name": "alice", "password": PASSWORDS["alice"]}, status=429)
    assert "Too many failed logins" in res.json["error"]
    # a client's own X-Forwarded-For is not believed (only a trusted_proxy's is)
    users_app.get("/files/", headers={**basic("alice"), "X-Forwarded-For": "10.1.1.1"},
                  status=429)
    other = {"REMOTE_ADDR": "10.9.8.7"}
    users_app.get("/files/", headers=basic("alice"), extra_environ=other, status=200)
    throttle = users_app.app.config["fileserver.auth"].throttle
    for doc in list(throttle.documents.all("login_failures")):  # as if an hour had passed
        throttle.documents.replace("login_failures", doc.id,
                                   {"times": [t - 3600 for t in doc.body["times"]]}, doc.version)
    users_app.get("/files/", headers=basic("alice"), status=200)  # the window passed
