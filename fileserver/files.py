"""The /files routes: raw HTTP for curl and the HTML listing for browsers.

    PUT    /files/<name>        store the raw body (201 new, 200 replaced)
    POST   /files/[<folder>/]   multipart parts named "file" (201 JSON, 303 for forms),
                                or a field "url" the server fetches (fetch.py)
    GET    /files/<name>        download (Range, ETag, 304; ?download for attachment)
    DELETE /files/<name>        204
    GET    /files/[<folder>/]   listing: JSON for API clients, HTML for browsers
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from bottle import Bottle, HTTPResponse, redirect, request, response

from .auth import check_may_change, current_user, owner_for, unauthorized
from .errors import BadRequest, FileNotFound, Forbidden, UnsupportedMediaType
from .fetch import import_url
from .serving import send_stored
from .store import Listing, Store, format_size, validate_prefix
from .uploads import body_length, body_stream, iter_parts, multipart_boundary
from .web import json_response, query_int, render, wants_html

# Clients that send no better type (curl --data, browsers for unknown files).
NO_OPINION_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}


def file_url(name: str, absolute: bool = True) -> str:
    path = "/files/" + quote(name, safe="/")
    if not absolute:
        return path
    parts = request.urlparts
    return f"{parts.scheme}://{parts.netloc}{path}"


def describe(info) -> dict:
    return {**info.to_dict(), "url": file_url(info.name)}


def _client_type(value: str | None) -> str | None:
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


def put_owned(store: Store, name: str, source, **options):
    """``store.put`` for a request: only the owner (or an admin) replaces a file,
    and the file keeps its owner; a new file belongs to whoever sends it."""
    try:
        existing = store.info(name).owner
        check_may_change(existing, f"The file {name!r}")
    except FileNotFound:
        existing = None
    return store.put(name, source, owner=owner_for(existing), **options)


def put_file(name: str, store: Store):
    info, created = put_owned(store, name, body_stream(), length=body_length(),
                              content_type=_client_type(request.get_header("Content-Type")))
    headers = {"Location": file_url(info.name)} if created else {}
    return json_response(describe(info), 201 if created else 200, **headers)


def _folder_of(path: str) -> str:
    if path and not path.endswith("/"):
        raise BadRequest(f"POST uploads go to a folder URL ending in '/', not {path!r}; "
                         "use PUT to store one file under a name.")
    return validate_prefix(path)


def post_files(store: Store, path: str = ""):
    ctype = request.get_header("Content-Type", "")  # not .content_type: lowercased
    if not ctype.lower().startswith("multipart/form-data"):
        if path and not path.endswith("/") and request.forms.get("_method", "").upper() == "DELETE":
            return delete_file(path, store)  # the listing's no-JavaScript delete button
        if request.forms.getunicode("url") is not None:  # curl -d url=URL [-d name=NAME]
            folder = _folder_of(path)
            info = import_url(store, request.forms.getunicode("url"), folder=folder,
                              name=request.forms.getunicode("name"),
                              put=put_owned)
            return _uploaded(folder, [info])
        raise UnsupportedMediaType("Send multipart/form-data with parts named 'file' "
                                   "(curl -F file=@photo.jpg URL), a field url to import "
                                   "(curl -d url=https://... URL), or PUT the raw body to /files/<name>.")
    folder = _folder_of(path)
    boundary = multipart_boundary(ctype)
    stored = []
    fields = {}  # url and name: a URL to import once the form is read
    try:
        for segment, part in iter_parts(boundary):
            if segment.name in ("url", "name") and segment.filename is None:
                fields[segment.name] = part.read_text().strip()
                continue
            if segment.name != "file" or segment.filename is None:
                continue
            filename = segment.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if not filename:
                continue  # a form's empty file input
            info, _ = put_owned(store, folder + filename, part,
                                content_type=_client_type(segment.content_type))
            stored.append(info)
        if fields.get("url"):
            stored.append(import_url(store, fields["url"], folder=folder, name=fields.get("name"),
                                     put=put_owned))
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


def delete_file(name: str, store: Store):
    check_may_change(store.info(name).owner, f"The file {name!r}")
    store.delete(name)
    if wants_html() and request.method == "POST":
        folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        redirect(file_url(folder, absolute=False), 303)
    return HTTPResponse(status=204)


def _next_url(listing: Listing, **query: str) -> str | None:
    if listing.next_after is None:
        return None
    query = {k: v for k, v in query.items() if v}
    return request.path + "?" + urlencode({**query, "after": listing.next_after})


def list_files(store: Store, path: str = ""):
    folder = _folder_of(path)
    html = wants_html()
    prefix = folder + request.query.getunicode("prefix", default="")
    delimiter = "/" if html else request.query.getunicode("delimiter", default="") or None
    limit = query_int("limit", 200 if html else 100)
    after = request.query.getunicode("after", default=None)
    owner = _owner_filter()
    listing = store.list(prefix, after=after, limit=limit, delimiter=delimiter, owner=owner)
    next_url = _next_url(listing, prefix=request.query.getunicode("prefix", default=""),
                         limit=request.query.get("limit", ""),
                         delimiter=request.query.getunicode("delimiter", default=""),
                         format=request.query.get("format", ""),
                         owner=request.query.getunicode("owner", default=""))
    if html:
        response.content_type = "text/html; charset=utf-8"
        return render("listing", folder=folder, listing=listing, next_url=next_url,
                      file_url=file_url, format_size=format_size,
                      prefix=request.query.getunicode("prefix", default=""),
                      url_import=request.app.config["fileserver.settings"].url_import)
    return json_response({"prefix": prefix, "files": [describe(i) for i in listing.files],
                          "folders": listing.folders, "next": next_url})


def _owner_filter() -> str | None:
    """``?owner=me`` (one's own files) or ``?owner=NAME``; None lists everybody's."""
    owner = request.query.getunicode("owner", default="").strip()
    if owner != "me":
        return owner or None
    user = current_user()
    if user is None:
        raise unauthorized("?owner=me needs to know who you are: log in "
                           "(curl -u NAME, or a token).")
    return user.name


def get_path(name: str, store: Store):
    if name.endswith("/"):
        return list_files(store, name)
    return send_stored(store, name, download="download" in request.query)


def add_routes(app: Bottle) -> None:
    app.add_hook("before_request", check_same_origin)
    app.route("/", "GET", lambda: redirect("/files/"))
    app.route("/files/", "GET", list_files)
    app.route("/files/", "POST", post_files)
    # Like bottle's "path" filter, but matching any character (newlines too),
    # so every bad name reaches the store's validation and gets a clear 400.
    app.router.add_filter("name", lambda _conf: (r"(?s:.+)", None, None))
    app.route("/files/<name:name>", "GET", get_path)
    app.route("/files/<name:name>", "PUT", put_file)
    app.route("/files/<path:name>", "POST", post_files)
    app.route("/files/<name:name>", "DELETE", delete_file)
