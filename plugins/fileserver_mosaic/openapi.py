"""The OpenAPI description of the mosaic routes, added to ``/openapi.json``
by ``install()`` (see ``fileserver/openapi.py``).

The answers' schemas are named components so that clients (and schemathesis,
which infers links between operations from schema names) can tell a job's id
from a tile's."""

from __future__ import annotations

from fileserver.openapi import (BINARY, FILE_HEADERS, FORMAT, HTML, NULLABLE_STRING, form,
                                header, json_content, path_param, query, redirect, ref,
                                request_header, responses)

from .ingest import Limits

NULLABLE_INT = {"type": ["integer", "null"]}

JOB_SCHEMA = {
    "type": "object",
    "required": ["id", "kind", "state", "stage", "done", "total", "result", "error", "status",
                 "url"],
    "properties": {
        "id": {"type": "string"}, "kind": {"type": "string", "enum": ["mosaic", "tiles"]},
        "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
        "stage": {"type": "string"}, "done": {"type": "integer"}, "total": {"type": "integer"},
        "result": {"type": ["object", "null"], "description": "What the request would have "
                                                              "answered, once done."},
        "error": NULLABLE_STRING,
        "status": {**NULLABLE_INT, "description": "The status the request would have had."},
        "url": {"type": "string"},
    },
}
TILE_IDS = {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
SKIPPED_SCHEMA = {
    "type": "object", "required": ["count", "entries"],
    "properties": {
        "count": {"type": "integer", "minimum": 1},
        "entries": {"type": "array", "items": {
            "type": "object", "required": ["entry", "detail"],
            "properties": {"entry": {"type": "string", "description": "The entry's name."},
                           "detail": {"type": "string", "description": "About this entry "
                                                                       "(may be empty)."}}}},
    },
}
REPORT_SCHEMA = {
    "type": "object", "required": ["added", "tiles", "repaired", "skipped", "seconds"],
    "properties": {
        "added": {"type": "integer", "minimum": 0},
        "tiles": {**TILE_IDS, "description": "The tiles added."},
        "repaired": {**TILE_IDS, "description": "Tiles already in the library whose missing "
                                                "image this upload stored again."},
        "skipped": {"type": "object", "additionalProperties": ref("SkippedEntries"),
                    "description": "Skipped entries by reason (\"duplicate\", \"not an "
                                   "image\"...), the most frequent first."},
        "seconds": {"type": "number"},
    },
}
MOSAIC_SCHEMA = {
    "type": "object",
    "required": ["name", "url", "cols", "rows", "tiles_used", "seconds", "index"],
    "properties": {
        "name": {"type": "string"}, "url": {"type": "string", "format": "uri"},
        "cols": {"type": "integer"}, "rows": {"type": "integer"},
        "tiles_used": {"type": "integer"}, "seconds": {"type": "number"},
        "index": {"type": "object", "required": ["queries", "records_read", "library",
                                                 "images_read"],
                  "additionalProperties": {"type": "integer"}},
    },
}
TILES_SCHEMA = {
    "type": "object", "required": ["count", "tiles", "next"],
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "tiles": {"type": "array", "items": ref("Tile")},
        "next": NULLABLE_STRING,
    },
}
TILE_SCHEMA = {
    "type": "object", "required": ["id", "url", "features", "meta"],
    "properties": {"id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                   "url": {"type": "string"}, "features": {"type": "object"},
                   "meta": {"type": "object"}},
}
SCHEMAS = {"Job": JOB_SCHEMA, "TileReport": REPORT_SCHEMA, "SkippedEntries": SKIPPED_SCHEMA,
           "Mosaic": MOSAIC_SCHEMA, "TilePage": TILES_SCHEMA, "Tile": TILE_SCHEMA}
JOB, REPORT, MOSAIC, TILES = (ref(name) for name in ("Job", "TileReport", "Mosaic", "TilePage"))

LIMITS = Limits()  # the defaults; a server configured otherwise answers 400 out of its own
PARAMS = {
    "tile": ({"type": "integer", "minimum": 4, "maximum": LIMITS.max_tile},
             "Edge of one tile in the output, in px (default 32)."),
    "cols": ({"type": "integer", "minimum": 1, "maximum": LIMITS.max_cols},
             "Cells across (default 40); rows follow the source's aspect ratio."),
    "max_repeats": ({"type": "integer", "minimum": 0, "maximum": 1_000_000},
                    "How often one tile may appear; 0 = no limit."),
    "blend": ({"type": "integer", "minimum": 0, "maximum": 100},
              "Percent of the source laid over the mosaic."),
    "format": ({"type": "string", "enum": ["jpeg", "jpg", "png"]}, "The output's format."),
    "source": ({"type": "string"}, "The name of a stored image to use as the source."),
}
PREFER = {**request_header("Prefer", "respond-async: answer 202 with a job to poll."),
          "examples": {"async": {"value": "respond-async"}}}
ACCEPTED = {"description": "Accepted (Prefer: respond-async): poll the job.",
            "content": json_content(JOB),
            "headers": {"Location": header("The job's URL.")}}
GALLERY_BACK = redirect("Browser forms go back to the gallery.")
TILE_ID = path_param("tile_id", "The tile's id (sha256 of its pixels).")

PATHS = {
    "/mosaic": {
        "get": {"summary": "The page to make a mosaic", "operationId": "mosaicPage",
                "parameters": [query("result", "A mosaic's name to show.")],
                "responses": responses({200: {"description": "The page.", "content": HTML}})},
        "post": {
            "summary": "Make a mosaic from an uploaded or stored image",
            "operationId": "makeMosaic",
            "parameters": [PREFER, query("name", "A label for a raw image body."),
                           *(query(key, text, schema) for key, (schema, text) in PARAMS.items())],
            "requestBody": {"required": False, "content": {
                **form({"image": BINARY, **{key: {**schema, "description": text}
                                            for key, (schema, text) in PARAMS.items()}},
                       multipart=True),
                **form({key: {**schema, "description": text}
                        for key, (schema, text) in PARAMS.items()}),
                "image/*": {"schema": BINARY},
            }},
            "responses": responses({
                201: {"description": "Made and stored under mosaics/.",
                      "content": json_content(MOSAIC),
                      "headers": {"Location": header("The stored mosaic's URL.")}},
                202: ACCEPTED,
                303: redirect("Browser forms go to the page showing the result."),
            }, 400, 404, 409, 413, 415),
        },
    },
    "/mosaic/jobs/{job_id}": {"get": {
        "summary": "A background job's state", "operationId": "mosaicJob",
        "parameters": [path_param("job_id", "The job's id."), FORMAT],
        "responses": responses({200: {"description": "The job.",
                                      "content": {**json_content(JOB), **HTML}}}, 404)}},
    "/mosaic/tiles": {
        "get": {"summary": "The tile library", "operationId": "listTiles",
                "parameters": [query("limit", "Tiles per page, at most 1000.",
                                     {"type": "integer"}),
                               query("after", "The cursor: tiles after this id."), FORMAT],
                "responses": responses({200: {"description": "One page of tiles.",
                                              "content": {**json_content(TILES), **HTML}}},
                                       400)},
        "post": {
            "summary": "Add tiles from a ZIP or images", "operationId": "addTiles",
            "parameters": [PREFER],
            "requestBody": {"required": True, "content": {
                **form({"zip": BINARY, "image": {"type": "array", "items": BINARY}},
                       multipart=True),
                "application/zip": {"schema": BINARY},
            }},
            "responses": responses({
                201: {"description": "Tiles were added.", "content": json_content(REPORT)},
                200: {"description": "Nothing new was added (see skipped).",
                      "content": json_content(REPORT)},
                202: ACCEPTED,
                303: redirect("Browser forms go to the job's page: its progress, then "
                              "the report."),
            }, 400, 413, 415),
        },
    },
    "/mosaic/tiles/{tile_id}/image": {"get": {
        "summary": "A tile's image", "operationId": "tileImage",
        "parameters": [TILE_ID, request_header("Range", "One range, bytes=a-b, a- or -n."),
                       request_header("If-None-Match", "ETags: 304 if one matches.")],
        "responses": responses({
            200: {"description": "The JPEG.", "headers": FILE_HEADERS,
                  "content": {"image/jpeg": {"schema": BINARY}}},
            206: {"description": "The range asked for.",
                  "content": {"image/jpeg": {"schema": BINARY}}},
            304: {"description": "Unchanged since the client's copy.",
                  "headers": {"ETag": FILE_HEADERS["ETag"]}},
        }, 404, 416)}},
    "/mosaic/tiles/{tile_id}": {
        "parameters": [TILE_ID],
        "delete": {"summary": "Remove a tile", "operationId": "deleteTile",
                   "responses": responses({204: {"description": "Removed."}}, 404)},
        "post": {"summary": "Remove a tile from a form (_method=DELETE)",
                 "operationId": "deleteTileForm",
                 "requestBody": {"required": True, "content": form(
                     {"_method": {"type": "string", "const": "DELETE"},
                      "after": {"type": "string", "description": "The gallery page to go "
                                                                 "back to."}}, ("_method",))},
                 "responses": responses({204: {"description": "Removed."}, 303: GALLERY_BACK},
                                        404, 405)},
    },
}

#: what ``install()`` adds to the app's OpenAPI document
PART = {"paths": PATHS, "schemas": SCHEMAS}
