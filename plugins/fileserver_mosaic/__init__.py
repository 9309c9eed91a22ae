"""The mosaic feature plugin: a tile library kept in the active backend.

    POST   /mosaic/tiles        a ZIP (multipart "zip" or raw application/zip body)
                                or images (multipart "image"): 201 JSON report
    GET    /mosaic/tiles        the library: JSON (count, page, next) or HTML gallery
    DELETE /mosaic/tiles/<id>   204; 404 when absent (POST with _method=DELETE: the
                                gallery's no-JavaScript delete button, 303 back)
    POST   /mosaic              make a mosaic from an uploaded ("image") or stored
                                ("source") image: 201 JSON, stored under mosaics/
    GET    /mosaic              the page to make one (and see a result)
    GET    /mosaic/jobs/<id>    a background job's state (JSON or a page)

Both POSTs run synchronously, as curl users expect; with ``Prefer:
respond-async`` they answer 202 and a job URL to poll instead (``jobs.py``).

Tiles are files ``tiles/<id>.jpg`` in the active store; their features live
in the backend's own tile index (``store.capability("tile_index")``, see
``index.py``). Backends without one are refused with 501 and a clear message.
"""

from __future__ import annotations

import re
import secrets
import tempfile
import time
from typing import BinaryIO
from urllib.parse import quote, urlencode

from bottle import Bottle, HTTPError, HTTPResponse, redirect, request, response

from fileserver.auth import check_may_change, owner_for
from fileserver.errors import FileNotFound, InvalidName
from fileserver.files import file_url
from fileserver.store import MAX_PAGE, Store, format_size
from fileserver.uploads import body_length, body_stream, iter_parts, multipart_boundary
from fileserver.web import json_response, query_int, render, require_form_delete, wants_html

from .generate import FORMATS, Params, encode, generate, load_source
from .index import TileIndex, tile_file
from .ingest import Limits, Report, ingest_image, ingest_zip, spool
from .jobs import Job, Jobs

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


def wants_async() -> bool:
    """RFC 7240: ``Prefer: respond-async`` asks for 202 and a job to poll."""
    prefer = request.get_header("Prefer", "")
    return any(p.split("=")[0].strip().lower() == "respond-async" for p in prefer.split(","))


def _jobs() -> Jobs:
    return request.app.config["mosaic.jobs"]


def accepted(job: Job) -> HTTPResponse:
    state = job.to_dict()
    if wants_html():
        redirect(state["url"], 303)
    return json_response(state, 202, Location=state["url"])


def post_tiles(store: Store):
    index, limits = tile_index(store), _limits()
    owner = owner_for()  # read now: a job's thread has no request
    ctype = request.get_header("Content-Type", "")
    base = ctype.split(";")[0].strip().lower()
    uploads: list[tuple[str, str, BinaryIO]] = []  # (kind, label, spooled file)

    def close() -> None:
        for _, _, fp in uploads:
            fp.close()

    try:
        if base in ZIP_TYPES:
            uploads.append(("zip", "upload.zip", spool(body_stream(), limits.max_archive,
                                                       body_length())))
        elif base == "multipart/form-data":
            for segment, part in iter_parts(multipart_boundary(ctype)):
                if segment.name in ("zip", "image") and segment.filename:
                    uploads.append((segment.name, segment.filename,
                                    spool(part, limits.max_archive)))
            if not uploads:
                raise HTTPError(400, "No upload in the form: send a part named 'zip' "
                                "(curl -F zip=@tiles.zip URL) or 'image' (-F image=@a.jpg).")
        else:
            raise HTTPError(415, "Send a ZIP (curl -F zip=@tiles.zip URL, or --data-binary "
                            "@tiles.zip -H 'Content-Type: application/zip') or images "
                            "(-F image=@a.jpg).")
    except BaseException:
        close()
        raise

    def work(job: Job | None) -> dict:
        report = Report()
        for kind, label, fp in uploads:
            if kind == "zip":
                ingest_zip(fp, store, index, limits, report, progress=job and job.progress,
                           owner=owner)
            else:
                ingest_image(fp, label, store, index, limits, report, owner=owner)
        if report.added:
            if job:
                job.progress("indexing", job.done, job.total)
            index.refresh()
        return {**report.to_dict(), "_status": 201 if report.added else 200}

    if wants_async():
        return accepted(_jobs().submit("tiles", work, close))
    try:
        result = work(None)
    finally:
        close()
    if wants_html():
        redirect("/mosaic/tiles", 303)
    return json_response(result, result.pop("_status"))


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
        return render("mosaic_tiles", count=index.count(), tiles=tiles, next_url=next_url,
                      after=after or "")
    return json_response({"count": index.count(), "tiles": tiles, "next": next_url})


def delete_tile(tile_id: str, store: Store):
    index = tile_index(store)
    if not TILE_ID.fullmatch(tile_id) or index.get(tile_id) is None:
        raise HTTPError(404, f"No tile {tile_id!r} in the library.")
    try:
        check_may_change(store.info(tile_file(tile_id)).owner, f"The tile {tile_id}")
    except FileNotFound:
        pass  # an index entry without its image: anyone who may write may clean it up
    if not index.remove(tile_id):
        raise HTTPError(404, f"No tile {tile_id!r} in the library.")
    try:
        store.delete(tile_file(tile_id))
    except FileNotFound:
        pass  # the index entry was what made it a tile
    return HTTPResponse(status=204)


def post_tile(tile_id: str, store: Store):
    """The gallery's delete button without JavaScript: a form can only POST."""
    require_form_delete("a tile")
    result = delete_tile(tile_id, store)
    if wants_html():
        after = request.forms.getunicode("after", default="")
        redirect("/mosaic/tiles" + ("?" + urlencode({"after": after}) if after else ""), 303)
    return result


PARAMS = ("tile", "cols", "max_repeats", "blend", "format", "source")


def _output_name(label: str, cols: int, rows: int, fmt: str) -> str:
    stem = label.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:60] or "mosaic"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"mosaics/{stem}-{cols}x{rows}-{stamp}-{secrets.token_hex(2)}.{FORMATS[fmt][2]}"


def _read_source(store: Store, limits: Limits) -> tuple[dict[str, str], str, BinaryIO]:
    """The parameters and the source image (spooled to a temporary file)
    from the query string and a multipart, urlencoded or raw image body."""
    fields = {k: request.query.getunicode(k) for k in PARAMS if k in request.query}
    ctype = request.get_header("Content-Type", "")
    base = ctype.split(";")[0].strip().lower()
    label, spooled = "", None
    try:
        if base == "multipart/form-data":
            for segment, part in iter_parts(multipart_boundary(ctype)):
                if segment.filename is None:
                    fields[segment.name] = part.read_text()
                elif segment.name == "image" and segment.filename:
                    if spooled is not None:
                        raise HTTPError(400, "Send one source image per mosaic.")
                    label, spooled = segment.filename, spool(part, limits.max_archive)
        elif base == "application/x-www-form-urlencoded":
            fields.update({k: request.forms.getunicode(k) for k in request.forms})
        elif base.startswith("image/"):
            label = request.query.getunicode("name", default="upload")
            spooled = spool(body_stream(), limits.max_archive, body_length())
        elif base:
            raise HTTPError(415, "Send the source as multipart (curl -F image=@photo.jpg URL), "
                            "a raw image body, or name a stored one (-F source=NAME).")
        if spooled is None:
            label = (fields.get("source") or "").strip()
            if not label:
                raise HTTPError(400, "No source image: upload one (curl -F image=@photo.jpg URL) "
                                "or name a stored file (-F source=photos/a.jpg).")
            with store.open(label) as fp:
                spooled = spool(fp, limits.max_archive)
        return fields, label, spooled
    except BaseException:
        if spooled is not None:
            spooled.close()
        raise


def post_mosaic(store: Store):
    index, limits = tile_index(store), _limits()
    fields, label, spooled = _read_source(store, limits)
    parts = request.urlparts
    site = f"{parts.scheme}://{parts.netloc}"  # the job thread has no request
    owner = owner_for()
    source_file = spooled  # not ``spooled``: that name is cleared once a job owns the file
    try:
        params = Params.parse(fields, limits)  # bad parameters: 400 now, not in a job
    except BaseException:
        spooled.close()
        raise

    def work(job: Job | None) -> dict:
        started = time.monotonic()
        source = load_source(source_file, label, limits)
        mosaic = generate(source, params, store, index, limits, job and job.progress)
        name = _output_name(label, mosaic.cols, mosaic.rows, params.format)
        with tempfile.TemporaryFile(prefix="mosaic-") as out:
            content_type = encode(mosaic.image, params.format, out)
            length = out.tell()
            out.seek(0)
            store.put(name, out, content_type=content_type, length=length, owner=owner,
                      meta={"mosaic": "output", "source": label[:200]})
        stats = mosaic.stats
        return {"name": name, "url": site + file_url(name, absolute=False),
                "cols": mosaic.cols, "rows": mosaic.rows, "tiles_used": mosaic.tiles_used,
                "seconds": round(time.monotonic() - started, 3),
                "index": {"queries": stats.queries, "records_read": stats.records_read,
                          "library": index.count(), "images_read": stats.images_read}}

    try:
        if wants_async():
            job, spooled = _jobs().submit("mosaic", work, spooled.close), None
            return accepted(job)
        result = work(None)
    finally:
        if spooled is not None:
            spooled.close()
    if wants_html():
        redirect("/mosaic?" + urlencode({"result": result["name"]}), 303)
    return json_response(result, 201, Location=result["url"])


def mosaic_page(store: Store):
    """The form: a stored image or an upload, the parameters; and a result."""
    images = []
    for after in (None, "tiles/\U0010ffff"):  # everything but the tile library
        listing = store.list("", after=after, limit=MAX_PAGE)
        images += [f.name for f in listing.files if f.content_type.startswith("image/")
                   and not f.name.startswith("tiles/")]
    images = images[:MAX_PAGE]
    result = request.query.getunicode("result", default="")
    info = None
    if result:
        try:
            info = store.info(result)
        except (FileNotFound, InvalidName):
            pass  # the page says so instead of showing a broken image
    source = (info.meta or {}).get("source", "") if info else ""
    response.content_type = "text/html; charset=utf-8"
    return render("mosaic", images=[n for n in images if not n.startswith("mosaics/")],
                  mosaics=[n for n in images if n.startswith("mosaics/")],
                  selected=source if source in images else "", result=result, info=info,
                  source=source, result_url=file_url(result, absolute=False) if result else "",
                  tiles=index_count(store), params=Params(), limits=_limits(),
                  format_size=format_size, quote=quote)


def index_count(store: Store) -> int | None:
    index = store.capability("tile_index")
    return None if index is None else index.count()


def get_job(job_id: str):
    job = _jobs().get(job_id)
    if job is None:
        raise HTTPError(404, f"No job {job_id!r}: jobs are kept in memory for an hour "
                        "and forgotten when the server restarts.")
    if wants_html():
        response.content_type = "text/html; charset=utf-8"
        return render("mosaic_job", job=job.to_dict(), file_url=file_url, quote=quote)
    return json_response(job.to_dict())


def install(app: Bottle) -> None:
    app.config.setdefault("mosaic.limits", Limits())
    app.config.setdefault("mosaic.jobs", Jobs())
    app.route("/mosaic", "POST", post_mosaic)
    app.route("/mosaic", "GET", mosaic_page)
    app.route("/mosaic/jobs/<job_id>", "GET", get_job)
    app.route("/mosaic/tiles", "POST", post_tiles)
    app.route("/mosaic/tiles", "GET", list_tiles)
    app.route("/mosaic/tiles/<tile_id>", "DELETE", delete_tile)
    app.route("/mosaic/tiles/<tile_id>", "POST", post_tile)
    # links in every page's header (views/base.tpl)
    app.config["fileserver.nav"] = (*(app.config.get("fileserver.nav") or ()),
                                    ("/mosaic", "make a mosaic"), ("/mosaic/tiles", "mosaic tiles"))
    from fileserver.openapi import PLUGIN_PARTS  # the routes' description in /openapi.json
    from .openapi import PART
    app.config[PLUGIN_PARTS] = (*(app.config.get(PLUGIN_PARTS) or ()), PART)
