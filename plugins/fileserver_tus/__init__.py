"""Resumable uploads: the tus 1.0 protocol (https://tus.io/protocols/resumable-upload)
with the creation, creation-with-upload, termination, checksum and
expiration extensions.

    OPTIONS /uploads/           what this server supports (Tus-Version, Tus-Extension...)
    POST    /uploads/           a new upload: Upload-Length, Upload-Metadata naming the file
                                (filename, optional folder, filetype, exists); 201 + Location.
                                A body (application/offset+octet-stream) is its first part
    HEAD    /uploads/<id>       how far it got: Upload-Offset, Upload-Length
    GET     /uploads/<id>       the same as JSON, for people
    PATCH   /uploads/<id>       the next part at Upload-Offset (409 if that is not where it
                                stands; 460 if Upload-Checksum does not match); 204
    DELETE  /uploads/<id>       give up: the parts go; 204

On the last byte the file appears under /files/ exactly as a PUT would leave
it (see ``parts.py``): the same names, owners, roles and size limit, checked
from the first request on. State and parts live in the active backend.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import logging
import re
import threading

from bottle import Bottle, request, response

from fileserver.auth import check_may_change, current_user
from fileserver.documents import CollectionSpec
from fileserver.errors import (BadRequest, Conflict, Error, FileNotFound, NotFound, TooLarge,
                               UnsupportedMediaType)
from fileserver.features import Context, Feature
from fileserver.files import client_type, put_owned
from fileserver.options import Option, seconds, size
from fileserver.store import Store, too_large_message, validate_name
from fileserver.web import check_public, file_url, json_response, site_url

from .parts import CHECKSUMS, COLLECTION, Parts, Resumable, new_id, parse_checksum

log = logging.getLogger("fileserver.tus")
VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
PART_TYPE = "application/offset+octet-stream"
DIGITS = re.compile(r"[0-9]{1,19}")
MIME = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+( *;[ -~]*)?")


class PreconditionFailed(Error):
    status = 412


class Gone(Error):
    status = 410


def tus_headers() -> None:
    """On every answer under /uploads/, errors included."""
    if request.path.startswith("/uploads/"):
        response.set_header("Tus-Resumable", VERSION)
        response.set_header("Cache-Control", "no-store")


def check_version() -> None:
    """Every tus request names the version: 412 for another, 400 for none."""
    sent = request.get_header("Tus-Resumable")
    if sent is None:
        raise BadRequest(f"Send Tus-Resumable: {VERSION} with every tus request.",
                         **{"Tus-Version": VERSION})
    if sent != VERSION:
        raise PreconditionFailed(f"Send Tus-Resumable: {VERSION} (this server speaks tus "
                                 f"{VERSION}; got {sent!r}).", **{"Tus-Version": VERSION})


def parse_metadata(header: str) -> dict[str, str]:
    """``key base64,key2 base64`` -> {key: text}."""
    values = {}
    for item in filter(None, (p.strip() for p in header.split(","))):
        key, _, encoded = item.partition(" ")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata: the value of {key!r} is not base64 of UTF-8 "
                             "text.") from None
    return values


def target_name(metadata: dict[str, str]) -> str:
    filename = metadata.get("filename") or metadata.get("name")
    if not filename:
        raise BadRequest("Upload-Metadata must name the file: filename <base64 of the name> "
                         "(and folder <base64> to put it in one).")
    folder = metadata.get("folder", "").strip("/")
    return check_public(validate_name(f"{folder}/{filename}" if folder else filename),
                        change=True)


def whole(header: str, value: str | None) -> int:
    if value is None or not DIGITS.fullmatch(value):
        raise BadRequest(f"{header} must be a whole number of bytes, not {value!r}.")
    return int(value)


def file_type(metadata: dict[str, str]) -> str | None:
    """The client's type for the file (filetype, as tus-js-client and Uppy
    send it), if it is one; else the name decides, as for a PUT."""
    value = metadata.get("filetype") or metadata.get("type") or ""
    return client_type(value) if MIME.fullmatch(value) else None


def upload_url(upload_id: str) -> str:
    return f"{site_url()}/uploads/{upload_id}"


def expires(upload: Resumable) -> str:
    """When it is dropped if no part arrives: Upload-Expires, an HTTP date."""
    return email.utils.formatdate(upload.expires, usegmt=True)


def sends_part() -> bool:
    return request.get_header("Content-Type", "").split(";")[0].strip().lower() == PART_TYPE


def state(upload: Resumable) -> dict:
    return {"id": upload.id, "url": upload_url(upload.id), "offset": upload.offset,
            "length": upload.length, "name": upload.name, "done": upload.done,
            "expires": expires(upload)}


def state_headers(upload: Resumable) -> None:
    response.set_header("Upload-Offset", str(upload.offset))
    response.set_header("Upload-Length", str(upload.length))
    if upload.metadata:
        response.set_header("Upload-Metadata", upload.metadata)
    response.set_header("Upload-Expires", expires(upload))


def finisher(store: Store, upload: Resumable):
    """How the last part stores the file: as a PUT by the upload's sender.
    Returns the name it got (with exists=keep, maybe 'name (1).ext')."""
    def finish(whole_file) -> str:
        try:
            info, _ = put_owned(store, upload.name, whole_file, upload.exists,
                                length=upload.length, content_type=upload.content_type)
        finally:
            whole_file.close()
        return info.name
    return finish


def find(ctx: Context, upload_id: str) -> Resumable:
    """The upload, if the requester may see it: its sender, an admin, or anyone
    for an anonymous one (its id is the secret)."""
    upload = ctx.state["parts"].get(upload_id) if len(upload_id) <= 64 else None
    user = current_user()
    if upload is None or (upload.owner is not None and (
            user is None or (user.name != upload.owner and not user.can("admin")))):
        raise NotFound(f"No upload {upload_id!r} here (it may have finished and expired).")
    if upload.expired:
        raise Gone(f"The upload {upload_id!r} expired; start it again.")
    return upload


def patch_part(ctx: Context, store: Store, upload: Resumable) -> Resumable:
    if not sends_part():
        raise UnsupportedMediaType(f"A part's Content-Type is {PART_TYPE}.")
    if upload.done:
        raise Conflict(f"The upload is complete: the file is {upload.name!r}.")
    checksum = parse_checksum(request.get_header("Upload-Checksum"))
    return ctx.state["parts"].append(upload, request.environ["wsgi.input"], checksum,
                                     finisher(store, upload))


def options_uploads(ctx: Context, upload_id: str = ""):
    response.status = 204
    response.set_header("Tus-Version", VERSION)
    response.set_header("Tus-Extension", EXTENSIONS)
    response.set_header("Tus-Checksum-Algorithm", ",".join(CHECKSUMS))
    if ctx.store.max_size is not None:
        response.set_header("Tus-Max-Size", str(ctx.store.max_size))
    return ""


def post_upload(ctx: Context, store: Store):
    check_version()
    if request.get_header("Upload-Defer-Length"):
        raise BadRequest("Upload-Defer-Length is not supported: send Upload-Length.")
    length = whole("Upload-Length", request.get_header("Upload-Length"))
    if store.max_size is not None and length > store.max_size:
        raise TooLarge(too_large_message(store.max_size))
    raw = request.get_header("Upload-Metadata", "")
    metadata = parse_metadata(raw)
    name = target_name(metadata)
    exists = metadata.get("exists") or "replace"  # as a PUT without ?exists=
    if exists not in ("keep", "replace"):
        raise BadRequest(f"Upload-Metadata: exists is keep or replace, not {exists!r}.")
    if exists != "keep":  # refused now, not after the last byte
        try:
            check_may_change(store.info(name).owner, f"The file {name!r}")
        except FileNotFound:
            pass
    user = current_user()
    upload = ctx.state["parts"].create(Resumable(
        id=new_id(), length=length, name=name, owner=user.name if user else None, metadata=raw,
        content_type=file_type(metadata),
        exists=exists))
    headers = {"Location": upload_url(upload.id), "Upload-Expires": expires(upload)}
    if length == 0:
        upload = ctx.state["parts"].finish_empty(upload, finisher(store, upload))
    elif sends_part():
        upload = patch_part(ctx, store, upload)  # creation-with-upload
        headers["Upload-Offset"] = str(upload.offset)
    return json_response(state(upload), 201, **headers)


def head_upload(ctx: Context, upload_id: str):
    if request.method == "HEAD":
        check_version()
    upload = find(ctx, upload_id)
    state_headers(upload)
    return json_response(state(upload))


def patch_upload(ctx: Context, store: Store, upload_id: str):
    check_version()
    upload = find(ctx, upload_id)
    offset = whole("Upload-Offset", request.get_header("Upload-Offset"))
    if offset != upload.offset:
        raise Conflict(f"Upload-Offset is {offset}, but the upload stands at {upload.offset}; "
                       "go on from there.", **{"Upload-Offset": str(upload.offset)})
    upload = patch_part(ctx, store, upload)
    response.status = 204
    response.set_header("Upload-Offset", str(upload.offset))
    response.set_header("Upload-Expires", expires(upload))
    if upload.done:
        response.set_header("Content-Location", file_url(upload.name))
    return ""


def delete_upload(ctx: Context, upload_id: str):
    check_version()
    ctx.state["parts"].terminate(find(ctx, upload_id))
    response.status = 204
    return ""


def chunk_size(value: str) -> int:
    number = size(value)
    if number is None or not 64 * 1024 <= number <= 1024**3:
        raise ValueError(f"{value!r} is not a part size between 64K and 1G")
    return number


class Tus(Feature):
    name = "tus"
    collections = (CollectionSpec(COLLECTION),)
    options = {
        "expiration": Option(seconds(60, 30 * 86400), 86400.0,
                             "seconds an unfinished upload is kept after its last part"),
        "chunk_size": Option(chunk_size, 16 * 1024 * 1024,
                             "the upload page's part size, and files larger than one part go "
                             "through tus (below a proxy's request limit)"),
    }

    def routes(self, app: Bottle, ctx: Context) -> None:
        ctx.state["parts"] = Parts(ctx.store, ctx.documents, ctx.options["expiration"])
        app.add_hook("after_request", tus_headers)
        for path, method, callback in [
                ("/uploads/", "OPTIONS", options_uploads), ("/uploads/", "POST", post_upload),
                ("/uploads/<upload_id>", "OPTIONS", options_uploads),
                ("/uploads/<upload_id>", "GET", head_upload),
                ("/uploads/<upload_id>", "PATCH", patch_upload),
                ("/uploads/<upload_id>", "DELETE", delete_upload)]:
            app.route(path, method, functools.partial(callback, ctx))

    def resumable(self, ctx: Context) -> dict:
        return {"endpoint": "/uploads/", "chunk_size": ctx.options["chunk_size"]}

    def openapi(self):
        from .openapi import PART  # the routes' description in /openapi.json

        return PART

    def startup(self, ctx: Context) -> None:
        stop = ctx.state["stop"] = threading.Event()

        def sweep() -> None:
            while True:
                try:
                    removed = ctx.state["parts"].sweep()
                    if removed:
                        log.info("tus: removed %d expired uploads", removed)
                except Exception:  # the database away: try again next time
                    log.warning("tus: sweeping expired uploads failed", exc_info=True)
                if stop.wait(min(3600.0, ctx.options["expiration"])):
                    return

        threading.Thread(target=sweep, name="tus-sweep", daemon=True).start()

    def shutdown(self, ctx: Context) -> None:
        if "stop" in ctx.state:
            ctx.state["stop"].set()


plugin = Tus()
