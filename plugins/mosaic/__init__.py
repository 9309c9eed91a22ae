"""The mosaic feature plugin: a tile library kept in the active backend.

    POST   /mosaic/tiles        a ZIP (multipart "zip" or raw application/zip body)
                                or images (multipart "image"): 201 JSON report
    GET    /mosaic/tiles        the library: JSON (count, page, next) or HTML gallery
    DELETE /mosaic/tiles/<id>   204; 404 when absent

Tiles are files ``tiles/<id>.jpg`` in the active store; their features live
in the backend's own tile index (``store.capability("tile_index")``, see
``index.py``). Backends without one are refused with 501 and a clear message.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from bottle import Bottle, HTTPError, HTTPResponse, redirect, request, response

from fileserver.errors import FileNotFound
from fileserver.files import file_url
from fileserver.store import MAX_PAGE, Store
from fileserver.uploads import body_length, body_stream, iter_parts, multipart_boundary
from fileserver.web import json_response, query_int, render, wants_html

from .index import TileIndex, tile_file
from .ingest import Limits, Report, ingest_image, ingest_zip, spool

TILE_ID = re.compile(r"[0-9a-f]{64}")
ZIP_TYPES = ("application/zip", "application/x-zip-compressed")


def tile_index(store: Store) -> TileIndex:
    """The backend's tile index, or a 501 saying why there is none."""
    index = store.capability("tile_index")
    if index is None:
        raise HTTPError(501, f"This server's storage backend ({type(store).__name__}, "
                        f"{store.location or 'no location'}) has no tile index yet, so it cannot "
                        "keep a mosaic tile library; use the embedded backend for mosaics.")
    return index


def _limits() -> Limits:
    return request.app.config.get("mosaic.limits") or Limits()


def post_tiles(store: Store):
    index, limits = tile_index(store), _limits()
    ctype = request.get_header("Content-Type", "")
    base = ctype.split(";")[0].strip().lower()
    report = Report()
    if base in ZIP_TYPES:
        with spool(body_stream(), limits.max_archive, body_length()) as fp:
            ingest_zip(fp, store, index, limits, report)
    elif base == "multipart/form-data":
        seen = 0
        for segment, part in iter_parts(multipart_boundary(ctype)):
            if segment.name not in ("zip", "image") or not segment.filename:
                continue
            seen += 1
            with spool(part, limits.max_archive) as fp:
                if segment.name == "zip":
                    ingest_zip(fp, store, index, limits, report)
                else:
                    ingest_image(fp, segment.filename, store, index, limits, report)
        if not seen:
            raise HTTPError(400, "No upload in the form: send a part named 'zip' "
                            "(curl -F zip=@tiles.zip URL) or 'image' (-F image=@a.jpg).")
    else:
        raise HTTPError(415, "Send a ZIP (curl -F zip=@tiles.zip URL, or --data-binary @tiles.zip "
                        "-H 'Content-Type: application/zip') or images (-F image=@a.jpg).")
    if wants_html():
        redirect("/mosaic/tiles", 303)
    return json_response(report.to_dict(), 201 if report.added else 200)


def list_tiles(store: Store):
    index = tile_index(store)
    html = wants_html()
    limit = max(1, min(query_int("limit", 200 if html else 100), MAX_PAGE))
    after = request.query.getunicode("after", default=None)
    records = index.page(after, limit + 1)
    more, records = len(records) > limit, records[:limit]
    next_url = None
    if more:
        query = {k: v for k, v in (("limit", request.query.get("limit", "")),
                                   ("format", request.query.get("format", ""))) if v}
        next_url = request.path + "?" + urlencode({**query, "after": records[-1].id})
    tiles = [{"id": r.id, "url": file_url(tile_file(r.id)),
              "features": {"lab": [round(v, 1) for v in r.features.lab],
                           "bucket": r.features.bucket},
              "meta": r.meta} for r in records]
    if html:
        response.content_type = "text/html; charset=utf-8"
        return render("mosaic_tiles", count=index.count(), tiles=tiles, next_url=next_url)
    return json_response({"count": index.count(), "tiles": tiles, "next": next_url})


def delete_tile(tile_id: str, store: Store):
    index = tile_index(store)
    if not TILE_ID.fullmatch(tile_id) or not index.remove(tile_id):
        raise HTTPError(404, f"No tile {tile_id!r} in the library.")
    try:
        store.delete(tile_file(tile_id))
    except FileNotFound:
        pass  # the index entry was what made it a tile
    return HTTPResponse(status=204)


def install(app: Bottle) -> None:
    app.config.setdefault("mosaic.limits", Limits())
    app.route("/mosaic/tiles", "POST", post_tiles)
    app.route("/mosaic/tiles", "GET", list_tiles)
    app.route("/mosaic/tiles/<tile_id>", "DELETE", delete_tile)
