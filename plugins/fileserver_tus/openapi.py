"""The OpenAPI description of the tus routes, added to ``/openapi.json``."""

from __future__ import annotations

from fileserver.openapi import (BINARY, error, header, json_content, path_param, ref,
                                request_header, responses)

from .parts import CHECKSUMS

TUS_RESUMABLE = {"name": "Tus-Resumable", "in": "header", "required": True,
                 "description": "The protocol's version: 1.0.0.",
                 "schema": {"type": "string", "enum": ["1.0.0"]}}
UPLOAD_ID = path_param("upload_id", "The upload's id (from its Location).",
                       {"type": "string", "pattern": "^[0-9a-f]{32}$"})
ANSWER_HEADERS = {"Tus-Resumable": header("1.0.0")}
EXPIRES = header("When the upload is dropped if no part arrives (an HTTP date).")


def byte_count(name: str, description: str) -> dict:
    """A required request header holding a number of bytes."""
    return {"name": name, "in": "header", "required": True, "description": description,
            "schema": {"type": "string", "pattern": "^[0-9]+$"}}


OFFSET = header("Bytes stored so far.", {"type": "string", "pattern": "^[0-9]+$"})
TUS_ERRORS = {
    410: error("The upload expired.", ANSWER_HEADERS),
    412: error("Tus-Resumable is missing or names another version.",
               {"Tus-Version": header("The versions this server speaks: 1.0.0.")}),
    460: error("The part does not match Upload-Checksum; it was discarded.", ANSWER_HEADERS),
}
PART_BODY = {"application/offset+octet-stream": {"schema": BINARY}}
DISCOVERY = {204: {"description": "What this server supports.", "headers": {
    "Tus-Version": header("1.0.0"),
    "Tus-Extension": header("creation,creation-with-upload,termination,checksum,expiration"),
    "Tus-Checksum-Algorithm": header(",".join(CHECKSUMS)),
    "Tus-Max-Size": header("The largest upload, in bytes (absent: no limit).",
                           required=False)}}}

SCHEMAS = {
    "UploadState": {
        "type": "object",
        "required": ["id", "url", "offset", "length", "name", "done", "expires"],
        "properties": {
            "id": {"type": "string"}, "url": {"type": "string"},
            "offset": {"type": "integer", "minimum": 0},
            "length": {"type": "integer", "minimum": 0},
            "name": {"type": "string", "description": "Where the file appears under /files/."},
            "done": {"type": "boolean"}, "expires": {"type": "string"},
        },
    },
}
STATE = json_content(ref("UploadState"))

PATHS = {
    "/uploads/": {
        "options": {"summary": "What the tus server supports", "operationId": "tusOptions",
                    "responses": responses(DISCOVERY)},
        "post": {
            "summary": "Start a resumable upload (tus creation)", "operationId": "createUpload",
            "parameters": [
                TUS_RESUMABLE,
                byte_count("Upload-Length", "The file's size in bytes."),
                {"name": "Upload-Metadata", "in": "header", "required": True,
                 "description": "key base64-value pairs, comma-separated: filename (the "
                                "name), folder, filetype, exists (keep or replace).",
                 "schema": {"type": "string"}},
                request_header("Upload-Checksum", "algorithm base64-digest of the body."),
            ],
            "requestBody": {"required": False, "content": PART_BODY},
            "responses": responses({
                201: {"description": "Made; continue it at Location.", "content": STATE,
                      "headers": {"Location": header("The upload's URL."),
                                  "Upload-Expires": EXPIRES, **ANSWER_HEADERS}},
                **TUS_ERRORS}, 400, 409, 413, 507),
        },
    },
    "/uploads/{upload_id}": {
        "parameters": [UPLOAD_ID],
        "options": {"summary": "What the tus server supports", "operationId": "tusOptionsOf",
                    "responses": responses(DISCOVERY)},
        "get": {
            "summary": "How far an upload got (HEAD: the headers alone, with Tus-Resumable)",
            "operationId": "uploadState",
            "responses": responses({
                200: {"description": "Its state.", "content": STATE, "headers": {
                    "Upload-Offset": OFFSET, "Upload-Length": OFFSET,
                    "Upload-Expires": EXPIRES, **ANSWER_HEADERS}},
                **TUS_ERRORS}, 404),
        },
        "patch": {
            "summary": "Send the next part (tus core)", "operationId": "sendPart",
            "parameters": [
                TUS_RESUMABLE,
                byte_count("Upload-Offset", "Where the part starts: the upload's offset."),
                request_header("Upload-Checksum", "algorithm base64-digest of the part."),
            ],
            "requestBody": {"required": True, "content": PART_BODY},
            "responses": responses({
                204: {"description": "Stored; on the last byte the file is under /files/ "
                                     "(Content-Location).",
                      "headers": {"Upload-Offset": OFFSET, "Upload-Expires": EXPIRES,
                                  **ANSWER_HEADERS}},
                **TUS_ERRORS}, 400, 404, 409, 413, 415, 507),
        },
        "delete": {
            "summary": "Give up an upload (tus termination)", "operationId": "deleteUpload",
            "parameters": [TUS_RESUMABLE],
            "responses": responses({204: {"description": "Its parts are gone.",
                                          "headers": ANSWER_HEADERS},
                                    **TUS_ERRORS}, 404),
        },
    },
}

#: what ``install()`` adds to the app's OpenAPI document
PART = {"paths": PATHS, "schemas": SCHEMAS}
