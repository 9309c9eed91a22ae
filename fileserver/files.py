"""The /files routes: raw HTTP for curl, and the forms of the listing's page.

    PUT    /files/<name>        store the raw body (201 new, 200 replaced)
    POST   /files/[<folder>/]   multipart parts named "file" (201 JSON, 303 for forms),
                                or a field "url" the server fetches (fetch.py)
    GET    /files/<name>        download (Range, ETag, 304; ?download for attachment)
    DELETE /files/<name>        204
    GET    /files/[<folder>/]   the folder's listing (listing.py)
"""

from __future__ import annotations

import threading
from functools import partial

from bottle import Bottle, HTTPResponse, redirect, request

from .auth import check_may_change, owner_for
from .errors import BadRequest, FileNotFound, Forbidden, UnsupportedMediaType
from .fetch import import_url
from .listing import list_files
from .serving import send_stored
from .store import PRIVATE_PREFIX, Store, format_size, validate_prefix, visible_list
from .uploads import body_length, body_stream, iter_parts, multipart_boundary
from .web import (check_public, describe, file_url, folder_of, json_response, render,
                  wants_html)

# Clients that send no better type (curl --data, browsers for unknown files).
NO_OPINION_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}


def client_type(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value.split(";")[0].strip().lower() in NO_OPINION_TYPES else value


def check_same_origin() -> None:
    """Refuse state changes that a foreign web page makes a browser send."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.get_header("Origin")
    if origin and origin != "null":
        host = origin.split("://", 1)[-1]
        if host != request.get_header("Host", ""):
            raise Forbidden("Cross-site request refused: the Origin does not match this server.")
    elif request.get_header("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("Cross-site request refused.")


def put_owned(store: Store, name: str, source, exists: str | None = None, **options):
    """``store.put`` for a request: only the owner (or an admin) replaces a file,
    and the file keeps its owner; a new file belongs to whoever sends it.
    ``exists="keep"`` (else the query's ?exists=) stores beside a taken name instead."""
    if _exists_choice(exists) == "keep":
        return _put_beside(store, name, source, **options)
    try:
        existing = store.info(name).owner
        check_may_change(existing, f"The file {name!r}")
    except FileNotFound:
        existing = None
    return store.put(name, source, owner=owner_for(existing), **options)


def _exists_choice(value: str | None) -> str:
    """What an upload onto a taken name does: the form field or query parameter
    exists says keep or replace; replace when neither does (curl -T, curl -F)."""
    if value is None:
        value = request.query.get("exists")
    if value in (None, "", "replace"):
        return "replace"
    if value != "keep":
        raise BadRequest(f"exists (a form field or query parameter) must be keep or "
                         f"replace, not {value!r}.")
    return value


# Names that keep-both uploads in this process are storing right now, so two at
# once do not pick the same free name (store.exists cannot see them yet).
_RESERVED: set[tuple[int, str]] = set()
_RESERVING = threading.Lock()


def numbered_name(name: str, n: int) -> str:
    """'a/photo.jpg' -> 'a/photo (n).jpg'; a leading dot starts no extension."""
    folder, slash, base = name.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    if not stem:
        stem, dot, ext = base, "", ""
    return f"{folder}{slash}{stem} ({n}){dot}{ext}"


def _put_beside(store: Store, name: str, source, **options):
    """Store under the first free one of name, 'name (1).ext', 'name (2).ext'...
    chosen now, when the upload starts, not by the client."""
    with _RESERVING:
        free, n = name, 0
        while (id(store), free) in _RESERVED or store.exists(free):
            n += 1
            free = numbered_name(name, n)
        _RESERVED.add((id(store), free))
    try:
        return store.put(free, source, owner=owner_for(None), **options)
    finally:
        with _RESERVING:
            _RESERVED.discard((id(store), free))


def put_file(name: str, store: Store):
    content_type = client_type(request.get_header("Content-Type"))
    info, created = put_owned(store, check_public(name, change=True), body_stream(),
                              length=body_length(), content_type=content_type)
    headers = {"Location": file_url(info.name)} if created else {}
    return json_response(describe(info), 201 if created else 200, **headers)


def post_files(store: Store, path: str = ""):
    ctype = request.get_header("Content-Type", "")  # not .content_type: lowercased
    if not ctype.lower().startswith("multipart/form-data"):
        if path and not path.endswith("/") and request.forms.get("_method", "").upper() == "DELETE":
            return delete_file(path, store)  # the listing's no-JavaScript delete button
        if request.forms.getunicode("url") is not None:  # curl -d url=URL [-d name=NAME]
            folder = check_public(folder_of(path), change=True)
            info = import_url(store, request.forms.getunicode("url"), folder=folder,
                              name=request.forms.getunicode("name"),
                              put=partial(put_owned, exists=request.forms.get("exists")))
            return _uploaded(folder, [info])
        raise UnsupportedMediaType("Send multipart/form-data with parts named 'file' "
                                   "(curl -F file=@photo.jpg URL), a field url to import "
                                   "(curl -d url=https://... URL), or PUT the raw body "
                                   "to /files/<name>.")
    folder = check_public(folder_of(path), change=True)
    boundary = multipart_boundary(ctype)
    stored = []
    fields = {}  # url and name: a URL to import once the form is read; exists: for what follows
    try:
        for segment, part in iter_parts(boundary):
            if segment.name in ("url", "name", "exists") and segment.filename is None:
                fields[segment.name] = part.read_text().strip()
                continue
            if segment.name != "file" or segment.filename is None:
                continue
            filename = segment.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if not filename:
                continue  # a form's empty file input
            info, _ = put_owned(store, folder + filename, part, exists=fields.get("exists"),
                                content_type=client_type(segment.content_type))
            stored.append(info)
        if fields.get("url"):
            stored.append(import_url(store, fields["url"], folder=folder, name=fields.get("name"),
                                     put=partial(put_owned, exists=fields.get("exists"))))
    except Exception as exc:
        if stored:  # say what did arrive before the failure
            names = ", ".join(i.name for i in stored)
            exc.args = (f"{exc} Already stored from this request: {names}.",)
        raise
    if not stored:
        raise BadRequest("No file in the form: send parts named 'file' with a filename "
                         "(or a field url to import).")
    return _uploaded(folder, stored)


def _uploaded(folder: str, stored: list):
    """201 with the stored files' info; 303 back to the folder for browser forms."""
    if wants_html():
        redirect(file_url(folder, absolute=False), 303)
    return json_response([describe(i) for i in stored], 201)


def _parent(name: str) -> str:
    """The folder a file is in, as a listing's path: 'a/b/c.txt' -> 'a/b/', 'c.txt' -> ''."""
    return name[:name.rfind("/") + 1]


def delete_file(name: str, store: Store):
    check_public(name, change=True)
    check_may_change(store.info(name).owner, f"The file {name!r}")
    store.delete(name)
    if wants_html() and request.method == "POST":
        redirect(file_url(_parent(name), absolute=False), 303)
    return HTTPResponse(status=204)


def confirm_delete_page(store: Store, name: str) -> None:
    """``GET /files/<name>?delete``: the page the listing's Delete leads to without
    JavaScript, asking first; its button POSTs the delete form with the CSRF token."""
    if "delete" not in request.query:
        return
    info = store.info(check_public(name))
    check_may_change(info.owner, f"The file {name!r}")
    raise HTTPResponse(render("confirm_delete", info=info, url=file_url(name, False),
                              folder_url=file_url(_parent(name), False), format_size=format_size),
                       Content_Type="text/html; charset=utf-8", Cache_Control="no-store")


def get_path(name: str, store: Store):
    if name.endswith("/"):
        return list_files(store, name)
    confirm_delete_page(store, name)
    try:
        return send_stored(store, check_public(name), download="download" in request.query)
    except FileNotFound:
        _redirect_to_folder(store, name)
        raise


def _redirect_to_folder(store: Store, name: str) -> None:
    """A folder's URL without its slash goes to the folder (308, as dufs and
    miniserve do), so relative links in its listing resolve; else the 404 stands."""
    folder = name + "/"
    if not folder.startswith(PRIVATE_PREFIX) and visible_list(
            store, validate_prefix(folder), limit=1).files:
        _to_folder(folder)


def _to_folder(folder: str):
    """308 to the folder's URL, keeping the query (?format=json stays JSON)."""
    query = request.query_string
    raise HTTPResponse(status=308, Location=file_url(folder, absolute=False)
                       + ("?" + query if query else ""))


def add_routes(app: Bottle) -> None:
    app.add_hook("before_request", check_same_origin)
    app.route("/", "GET", lambda: redirect("/files/"))
    app.route("/files", "GET", lambda: _to_folder(""))
    app.route("/files/", "GET", list_files)
    app.route("/files/", "POST", post_files)
    # Like bottle's "path" filter, but matching any character (newlines too),
    # so every bad name reaches the store's validation and gets a clear 400.
    app.router.add_filter("name", lambda _conf: (r"(?s:.+)", None, None))
    app.route("/files/<name:name>", "GET", get_path)
    app.route("/files/<name:name>", "PUT", put_file)
    app.route("/files/<path:name>", "POST", post_files)
    app.route("/files/<name:name>", "DELETE", delete_file)
