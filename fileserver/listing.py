"""Folder listings: one page of a folder as HTML (the default, a page of links
that rclone, fsspec, wget and browsers read), JSON or plain text.

    GET /files/[<folder>/]   ?format=html|json|text (else the Accept header's
                             preference), ?prefix=, ?after=, ?limit=, ?delimiter=/
                             (JSON), ?owner=me|NAME, ?sort= and ?order= (HTML)
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

from bottle import HTTPResponse, request

from .auth import current_user, unauthorized
from .errors import BadRequest
from .serving import etag_matches
from .store import MAX_PAGE, Listing, Store, format_size, visible_list
from .web import (LISTING_FORMATS, check_public, describe, file_url, folder_of, listing_format,
                  query_int, render)


# ?sort= keys of the HTML listing; ties go by name.
SORT_KEYS = {"name": lambda i: i.name, "size": lambda i: (i.size, i.name),
             "modified": lambda i: (i.modified, i.name)}
SORT_ORDERS = ("asc", "desc")


def listing_order(query) -> tuple[str, str]:
    """(sort, order) from ?sort=name|size|modified&order=asc|desc, or a 400 naming
    the parameter; name ascending (the store's order) by default."""
    key, order = query.get("sort") or "name", query.get("order") or "asc"
    if key not in SORT_KEYS:
        raise BadRequest(f"The query parameter sort must be one of {', '.join(SORT_KEYS)}, "
                         f"not {key!r}.")
    if order not in SORT_ORDERS:
        raise BadRequest(f"The query parameter order must be asc or desc, not {order!r}.")
    return key, order


def sorted_listing(listing: Listing, key: str, order: str) -> Listing:
    """The page's entries in that order (``listing_order``): folders first (by
    name, they have no size or date), then files."""
    reverse = order == "desc"
    return Listing(sorted(listing.files, key=SORT_KEYS[key], reverse=reverse),
                   sorted(listing.folders, reverse=reverse), listing.next_after)


def _next_url(listing: Listing, **query: str) -> str | None:
    if listing.next_after is None:
        return None
    query = {k: v for k, v in query.items() if v}
    return request.path + "?" + urlencode({**query, "after": listing.next_after})


#: The app.config key for a feature's resumable uploads (its ``resumable``
#: hook: {"endpoint": path, "chunk_size": bytes}), which the upload form uses.
RESUMABLE = "fileserver.resumable"


def list_files(store: Store, path: str = ""):
    folder = folder_of(path)
    check_public(folder)
    fmt = listing_format()
    query = request.query
    prefix = folder + query.getunicode("prefix", default="")
    delimiter = (query.getunicode("delimiter", default="") or None) if fmt == "json" else "/"
    # a whole folder on one page where it can be: clients that read links see no "next"
    limit = query_int("limit", 100 if fmt == "json" else MAX_PAGE)
    listing = visible_list(store, prefix, after=query.getunicode("after", default=None),
                           limit=limit, delimiter=delimiter, owner=_owner_filter())
    next_url = _next_url(listing, prefix=query.getunicode("prefix", default=""),
                         limit=query.get("limit", ""),
                         delimiter=query.getunicode("delimiter", default=""),
                         format=query.get("format", ""),
                         owner=query.getunicode("owner", default=""))
    if fmt == "html":
        sort, order = listing_order(query)
        body = render("listing", folder=folder, listing=sorted_listing(listing, sort, order),
                      sort=sort, order=order, next_url=next_url,
                      file_url=file_url, format_size=format_size,
                      prefix=query.getunicode("prefix", default=""),
                      url_import=request.app.config["fileserver.settings"].url_import,
                      resumable=request.app.config.get(RESUMABLE))
    elif fmt == "text":  # like ls: names relative to the folder, folders ending in /
        body = "".join(n[len(folder):] + "\n" for n in
                       listing.folders + [i.name for i in listing.files])
    else:
        body = json.dumps({"prefix": prefix, "files": [describe(i) for i in listing.files],
                           "folders": listing.folders, "next": next_url})
    return _listing_response(body, LISTING_FORMATS[fmt], next_url)


def _listing_response(body: str, media: str, next_url: str | None):
    """A listing with what caches and linters expect: ``Vary: Accept`` (the
    same URL has three formats), a strong ETag of the bytes sent, and
    ``no-cache`` so a client revalidates instead of showing a stale folder."""
    data = body.encode()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"Content-Type": f"{media}; charset=utf-8", "Vary": "Accept", "ETag": etag,
               "Cache-Control": ("private, " if current_user() else "") + "no-cache"}
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next"'
    if etag_matches(request.get_header("If-None-Match", ""), etag, weak=True):
        return HTTPResponse(status=304, **{k: v for k, v in headers.items()
                                           if k != "Content-Type"})
    return HTTPResponse(data, status=200, **headers)


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
