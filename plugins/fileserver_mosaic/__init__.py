"""The mosaic feature plugin: a tile library kept in the active backend.

    POST   /mosaic/tiles        a ZIP (multipart "zip" or raw application/zip body)
                                or images (multipart "image"): 201 JSON report, skipped
                                entries grouped by reason (a browser form: the job's page)
    GET    /mosaic/tiles        the library: JSON (count, page, next) or HTML gallery
    GET    /mosaic/tiles/<id>/image
                                a tile's image (JPEG)
    DELETE /mosaic/tiles/<id>   204; 404 when absent (POST with _method=DELETE: the
                                gallery's no-JavaScript delete button, 303 back)
    POST   /mosaic              make a mosaic from an uploaded ("image") or stored
                                ("source") image: 201 JSON, stored under mosaics/
    GET    /mosaic              the page to make one (and see a result)
    GET    /mosaic/jobs/<id>    a background job's state (JSON or a page)

Both POSTs run synchronously, as curl users expect; with ``Prefer:
respond-async`` they answer 202 and a job URL to poll instead (``jobs.py``).

Tile images are private files of the active store (``index.tile_path``), out
of reach of /files; their features live in the backend's documents (the
collection ``tiles``, see ``index.py``), found through the backend's own index.
Images that earlier versions kept under ``tiles/`` are moved there at startup.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import tempfile
import time
from typing import BinaryIO
from urllib.parse import quote, urlencode

from bottle import Bottle, HTTPResponse, redirect, request, response

from fileserver.auth import check_may_change, owner_for
from fileserver.errors import BadRequest, FileNotFound, InvalidName, NotFound, UnsupportedMediaType
from fileserver.features import Context, Feature
from fileserver.options import Option, seconds, size, whole
from fileserver.serving import send_stored
from fileserver.store import MAX_PAGE, Store, format_size, visible_list
from fileserver.uploads import body_length, body_stream, iter_parts, multipart_boundary
from fileserver.web import (file_url, json_response, query_int, render, require_form_delete,
                            site_url, wants_html)

from .generate import FORMATS, Params, encode, generate, load_source
from .index import COLLECTION as TILES
from .index import LEGACY_FOLDER, TileIndex, move_legacy_images, tile_path
from .ingest import Limits, Report, ingest_image, ingest_zip, spool
from .jobs import COLLECTION as JOBS
from .jobs import STALE, Job, Jobs

log = logging.getLogger("fileserver.mosaic")
TILE_ID = re.compile(r"[0-9a-f]{64}")
ZIP_TYPES = ("application/zip", "application/x-zip-compressed")


def wants_async() -> bool:
    """RFC 7240: ``Prefer: respond-async`` asks for 202 and a job to poll."""
    prefer = request.get_header("Prefer", "")
    return any(p.split("=")[0].strip().lower() == "respond-async" for p in prefer.split(","))


def accepted(job: Job) -> HTTPResponse:
    state = job.to_dict()
    if wants_html():
        redirect(state["url"], 303)
    return json_response(state, 202, Location=state["url"])


def post_tiles(ctx: Context, store: Store):
    index, limits = ctx.state["index"], ctx.state["limits"]
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
                raise BadRequest("No upload in the form: send a part named 'zip' "
                                 "(curl -F zip=@tiles.zip URL) or 'image' (-F image=@a.jpg).")
        else:
            raise UnsupportedMediaType("Send a ZIP (curl -F zip=@tiles.zip URL, or --data-binary "
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
        return {**report.to_dict(), "_status": 201 if report.added or report.repaired else 200}

    # A browser form gets the job's page too: its progress, then the report.
    if wants_async() or wants_html():
        return accepted(ctx.state["jobs"].submit("tiles", work, close))
    try:
        result = work(None)
    finally:
        close()
    return json_response(result, result.pop("_status"))


def tile_url(tile_id: str) -> str:
    return f"{site_url()}/mosaic/tiles/{tile_id}/image"


def list_tiles(ctx: Context, store: Store):
    index = ctx.state["index"]
    html = wants_html()
    limit = max(1, min(query_int("limit", 200 if html else 100), MAX_PAGE))
    after = request.query.getunicode("after", default="") or None
    if after is not None and not TILE_ID.fullmatch(after):
        raise BadRequest(f"after must be a tile id (64 hex digits) from a previous page, "
                         f"not {after[:80]!r}.")
    records = index.page(after, limit + 1)
    more, records = len(records) > limit, records[:limit]
    next_url = None
    if more:
        query = {k: v for k, v in (("limit", request.query.get("limit", "")),
                                   ("format", request.query.get("format", ""))) if v}
        next_url = request.path + "?" + urlencode({**query, "after": records[-1].id})
    tiles = [{"id": r.id, "url": tile_url(r.id),
              "features": {"lab": [round(v, 1) for v in r.features.lab],
                           "bucket": r.features.bucket},
              "meta": r.meta} for r in records]
    if html:
        response.content_type = "text/html; charset=utf-8"
        return render("mosaic_tiles", count=index.count(), tiles=tiles, next_url=next_url,
                      after=after or "")
    return json_response({"count": index.count(), "tiles": tiles, "next": next_url})


def get_tile_image(ctx: Context, tile_id: str, store: Store):
    if not TILE_ID.fullmatch(tile_id):
        raise NotFound(f"No tile {tile_id!r} in the library.")
    try:
        return send_stored(store, tile_path(tile_id))
    except FileNotFound:  # the private name would mean nothing to the client
        raise NotFound(f"No image of tile {tile_id} in the library.") from None


def delete_tile(ctx: Context, tile_id: str, store: Store):
    index = ctx.state["index"]
    if not TILE_ID.fullmatch(tile_id) or index.get(tile_id) is None:
        raise NotFound(f"No tile {tile_id!r} in the library.")
    try:
        check_may_change(store.info(tile_path(tile_id)).owner, f"The tile {tile_id}")
    except FileNotFound:
        pass  # an index entry without its image: anyone who may write may clean it up
    if not index.remove(tile_id):
        raise NotFound(f"No tile {tile_id!r} in the library.")
    try:
        store.delete(tile_path(tile_id))
    except FileNotFound:
        pass  # the index entry was what made it a tile
    return HTTPResponse(status=204)


def post_tile(ctx: Context, tile_id: str, store: Store):
    """The gallery's delete button without JavaScript: a form can only POST."""
    require_form_delete("a tile")
    result = delete_tile(ctx, tile_id, store)
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
                        raise BadRequest("Send one source image per mosaic.")
                    label, spooled = segment.filename, spool(part, limits.max_archive)
        elif base == "application/x-www-form-urlencoded":
            fields.update({k: request.forms.getunicode(k) for k in request.forms})
        elif base.startswith("image/"):
            label = request.query.getunicode("name", default="upload")
            spooled = spool(body_stream(), limits.max_archive, body_length())
        elif base:
            raise UnsupportedMediaType("Send the source as multipart (curl -F image=@photo.jpg "
                                       "URL), a raw image body, or name a stored one "
                                       "(-F source=NAME).")
        if spooled is None:
            label = (fields.get("source") or "").strip()
            if not label:
                raise BadRequest("No source image: upload one (curl -F image=@photo.jpg URL) "
                                 "or name a stored file (-F source=photos/a.jpg).")
            with store.open(label) as fp:
                spooled = spool(fp, limits.max_archive)
        return fields, label, spooled
    except BaseException:
        if spooled is not None:
            spooled.close()
        raise


def post_mosaic(ctx: Context, store: Store):
    index, limits = ctx.state["index"], ctx.state["limits"]
    fields, label, spooled = _read_source(store, limits)
    site = site_url()  # the job thread has no request
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
            job, spooled = ctx.state["jobs"].submit("mosaic", work, spooled.close), None
            return accepted(job)
        result = work(None)
    finally:
        if spooled is not None:
            spooled.close()
    if wants_html():
        redirect("/mosaic?" + urlencode({"result": result["name"]}), 303)
    return json_response(result, 201, Location=result["url"])


def _stored_images(store: Store) -> list[str]:
    """The user's images: the server's private files (tiles) are not theirs to pick."""
    files = visible_list(store, "", limit=MAX_PAGE).files
    return [f.name for f in files if f.content_type.startswith("image/")]


def mosaic_page(ctx: Context, store: Store):
    """The form: a stored image or an upload, the parameters; and a result."""
    images = _stored_images(store)
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
                  tiles=ctx.state["index"].count(), params=Params(),
                  limits=ctx.state["limits"],
                  format_size=format_size, quote=quote)


def get_job(ctx: Context, job_id: str):
    job = ctx.state["jobs"].get(job_id)
    if job is None:
        raise NotFound(f"No job {job_id!r}: finished jobs are kept for an hour.")
    if wants_html():
        response.content_type = "text/html; charset=utf-8"
        return render("mosaic_job", job=job.to_dict(), file_url=file_url, quote=quote)
    return json_response(job.to_dict())


def _bytes(text: str) -> int:
    limit = size(text)
    if limit is None:
        raise ValueError(f"{text!r}: a bound is needed here (no 0 or none)")
    return limit


#: ``[plugin.mosaic]`` options: the bounds of ``Limits``, by the same names
OPTIONS = {name: Option(_bytes if name in ("max_archive", "max_entry", "max_total") else
                        whole(1, 10**12), getattr(Limits, name), help)
           for name, help in [
               ("max_archive", "bytes of one ZIP or image upload"),
               ("max_entries", "entries in one ZIP"),
               ("max_entry", "uncompressed bytes of one ZIP entry"),
               ("max_total", "uncompressed bytes of all entries of one ZIP"),
               ("max_ratio", "uncompressed / compressed, for entries over 1 MiB"),
               ("max_pixels", "width x height of one image (tile or source)"),
               ("max_tile", "mosaic tile edge in pixels"),
               ("max_cols", "mosaic cells across"),
               ("max_output_pixels", "width x height of one mosaic")]}
OPTIONS["job_stale_after"] = Option(seconds(0.5, 86400), STALE, "seconds without a heartbeat "
                                    "after which a job's process is taken for dead")


class Mosaic(Feature):
    """The mosaic plugin, as the core sees it (``fileserver.features``)."""

    name = "mosaic"
    collections = (TILES, JOBS)
    options = OPTIONS
    nav = (("/mosaic", "make a mosaic"), ("/mosaic/tiles", "mosaic tiles"))

    def openapi(self):
        from .openapi import PART  # the routes' description in /openapi.json

        return PART

    def startup(self, ctx: Context) -> None:
        limits = {k: v for k, v in ctx.options.items() if k != "job_stale_after"}
        index = TileIndex(ctx.documents)
        moved = move_legacy_images(ctx.store, index)  # before serving: mosaics need them
        if moved:
            log.info("mosaic: moved %d tile images out of %s", moved, LEGACY_FOLDER)
        ctx.state.update(limits=Limits(**limits), index=index,
                         jobs=Jobs(ctx.documents, stale=ctx.options["job_stale_after"]))

    def routes(self, app: Bottle, ctx: Context) -> None:
        for path, method, callback in [
                ("/mosaic", "POST", post_mosaic), ("/mosaic", "GET", mosaic_page),
                ("/mosaic/jobs/<job_id>", "GET", get_job),
                ("/mosaic/tiles", "POST", post_tiles), ("/mosaic/tiles", "GET", list_tiles),
                ("/mosaic/tiles/<tile_id>/image", "GET", get_tile_image),
                ("/mosaic/tiles/<tile_id>", "DELETE", delete_tile),
                ("/mosaic/tiles/<tile_id>", "POST", post_tile)]:
            app.route(path, method, functools.partial(callback, ctx))

    def shutdown(self, ctx: Context) -> None:
        if "jobs" in ctx.state:
            ctx.state["jobs"].close()


plugin = Mosaic()
