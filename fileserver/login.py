"""The login page, logout, and one's own account and API tokens.

    GET  /login                   the form          POST /login   name, password, next
    POST /logout                  ends the session (the cookie)
    GET  /account                 name, role, tokens (JSON or page)
    POST /account/tokens          a new token, shown once (201)
    DELETE /account/tokens/<id>   revoke (204); forms POST _method=DELETE
"""

from __future__ import annotations

from bottle import Bottle, HTTPResponse, redirect, request, response

from .auth import COOKIE, Auth, check_csrf, current_user
from .errors import NotFound, Unauthorized
from .web import json_response, render, require_form_delete, wants_html


def _auth() -> Auth:
    return request.app.config["fileserver.auth"]


def _safe_next(target: str | None) -> str:
    """Only a path on this server: never //host or a scheme (an open redirect)."""
    target = target or "/files/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/files/"
    return target


def login_page():
    response.content_type = "text/html; charset=utf-8"
    return render("login", error=None, login_name="", next=_safe_next(request.query.get("next")))


def login():
    auth = _auth()
    name = request.forms.getunicode("name", default="")
    password = request.forms.getunicode("password", default="")
    target = _safe_next(request.forms.getunicode("next"))
    user = auth.check_password(name, password)
    if user is None:
        if wants_html():
            response.status = 401
            response.content_type = "text/html; charset=utf-8"
            return render("login", error="Wrong user name or password.", login_name=name,
                          next=target)
        raise Unauthorized("Wrong user name or password.")
    auth.set_session(user)
    if wants_html():
        redirect(target, 303)
    return json_response({"name": user.name, "role": user.role})


def logout():
    if current_user() is not None:
        check_csrf(request.forms.get("_csrf"))
    response.delete_cookie(COOKIE, path="/")
    if wants_html():
        redirect("/login", 303)
    return HTTPResponse(status=204)


def _tokens(name: str) -> list[dict]:
    return [{"id": token_id, "label": doc.get("label", ""), "created": doc.get("created")}
            for token_id, doc in _auth().accounts.tokens(name)]


def _signed_in():
    user = current_user()
    if user is None:  # the hook already asked for a login; only a backend without accounts
        raise Unauthorized("Log in to see your account.")
    return user


def account(new_token: str | None = None):
    user = _signed_in()
    tokens = _tokens(user.name)
    if wants_html():
        response.content_type = "text/html; charset=utf-8"
        return render("account", account=user, tokens=tokens, new_token=new_token)
    return json_response({"name": user.name, "role": user.role, "tokens": tokens})


def new_token():
    user = _signed_in()
    label = request.forms.getunicode("label", default="")
    token_id, token = _auth().accounts.new_token(user.name, label)
    if wants_html():
        response.status = 201
        return account(new_token=token)
    return json_response({"id": token_id, "token": token, "label": label[:100]}, 201)


def revoke_token(token_id: str):
    user = _signed_in()
    if not _auth().accounts.revoke_token(user.name, token_id):
        raise NotFound(f"You have no token {token_id!r}.")
    if request.method == "POST" and wants_html():
        redirect("/account", 303)
    return HTTPResponse(status=204)


def post_token(token_id: str):
    """The account page's revoke button without JavaScript: a form can only POST."""
    require_form_delete("(revoke) a token")
    return revoke_token(token_id)


def add_routes(app: Bottle) -> None:
    app.route("/login", "GET", login_page)
    app.route("/login", "POST", login)
    app.route("/logout", "POST", logout)
    app.route("/account", "GET", account)
    app.route("/account/tokens", "POST", new_token)
    app.route("/account/tokens/<token_id>", "DELETE", revoke_token)
    app.route("/account/tokens/<token_id>", "POST", post_token)
