"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

Written as Python data rather than a JSON or YAML file: the answers every
route shares (errors, the authentication answers) are built once by small
helpers instead of repeated, no YAML parser is needed, and feature plugins
add the paths and schemas of their own routes (``app.config[PLUGIN_PARTS]``),
so the document describes the routes this app really has. ``tests/test_openapi.py`` keeps it true: every route is
described, every description is a route, and real answers fit the schemas.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from bottle import Bottle, HTTPResponse

from .auth import PUBLIC

OPENAPI = "3.1.0"
#: the config key where feature plugins add their part: ``{"paths": ..., "schemas": ...}``
PLUGIN_PARTS = "fileserver.openapi"

# -- building blocks ------------------------------------------------------------------


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


HTML = {"text/html": {"schema": {"type": "string"}}}
BINARY = {"type": "string", "format": "binary"}
ANY_BYTES = {"*/*": {}}  # any bytes: no schema (a stored file may well be JSON)

#: why a status may be answered, for the statuses many routes share
ERRORS = {
    400: "The request is malformed: a bad name, parameter or body (the message says which).",
    404: "Not found.",
    405: "Not allowed on this resource.",
    409: "Conflicts with the current state (the message says how).",
    413: "The body, or what it would make, is larger than the server allows.",
    415: "The body is of a type this route does not take.",
    416: "The requested range is outside the file.",
    502: "The remote server answered with an error.",
    503: "The storage backend cannot be reached; try again later.",
    504: "The remote server did not answer in time.",
    507: "The disk or the database's quota is full; nothing was stored.",
}


def error(description: str, headers: dict | None = None) -> dict:
    """An error answer: JSON for API clients, a small page for browsers."""
    answer = {"description": description,
              "content": {**json_content(ref("Error")), **HTML}}
    if headers:
        answer["headers"] = headers
    return answer


def header(description: str, schema: dict | None = None, required: bool = True) -> dict:
    return {"description": description, "required": required,
            "schema": schema or {"type": "string"}}


def redirect(description: str) -> dict:
    return {"description": description,
            "headers": {"Location": header("Where to go next.")}}


def responses(ok: dict[int, dict], *errors: int) -> dict:
    """``ok`` plus the listed error statuses, plus what any route may answer:
    400 (also for malformed Basic credentials), 401, 403 and 429 (accounts,
    fileserver/auth.py) and 503 (the store is down)."""
    answers = {str(status): answer for status, answer in ok.items()}
    for status in sorted({*errors, 400, 503}):
        answers[str(status)] = error(ERRORS[status])
    for status in ("401", "403", "429"):
        answers[status] = {"$ref": f"#/components/responses/{status}"}
    return answers


def query(name: str, description: str, schema: dict | None = None, **extra: Any) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}, **extra}


def path_param(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string", "minLength": 1}}


def request_header(name: str, description: str) -> dict:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}


def form(properties: dict, required: tuple[str, ...] = (), *,
         multipart: bool = False) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    kind = "multipart/form-data" if multipart else "application/x-www-form-urlencoded"
    return {kind: {"schema": schema}}


FORMAT = query("format", "html, json or text (one name per line, folders ending in '/'): "
               "overrides the Accept header's choice, which is HTML unless "
               "application/json or text/plain is preferred.",
               {"type": "string", "enum": ["html", "json", "text"]})
NULLABLE_STRING = {"type": ["string", "null"]}

# -- schemas --------------------------------------------------------------------------

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error", "status"],
        "properties": {"error": {"type": "string", "description": "What went wrong, for a person."},
                       "status": {"type": "integer", "minimum": 400, "maximum": 599}},
    },
    "FileInfo": {
        "type": "object",
        "required": ["name", "size", "content_type", "sha256", "created", "modified",
                     "owner", "meta", "url"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "size": {"type": "integer", "minimum": 0},
            "content_type": {"type": "string", "minLength": 1},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "created": {"type": "string", "format": "date-time"},
            "modified": {"type": "string", "format": "date-time"},
            "owner": NULLABLE_STRING,
            "meta": {"type": "object"},
            "url": {"type": "string", "format": "uri"},
        },
    },
    "Listing": {
        "type": "object", "required": ["prefix", "files", "folders", "next"],
        "properties": {
            "prefix": {"type": "string"},
            "files": {"type": "array", "items": ref("FileInfo")},
            "folders": {"type": "array", "items": {"type": "string"},
                        "description": "Folder names ending in the delimiter (with ?delimiter=)."},
            "next": {**NULLABLE_STRING, "description": "The next page's URL, null on the last."},
        },
    },
    "Account": {
        "type": "object", "required": ["name", "role", "tokens"],
        "properties": {
            "name": {"type": "string"},
            "role": {"type": "string", "enum": ["reader", "writer", "admin"]},
            "tokens": {"type": "array", "items": {
                "type": "object", "required": ["id", "created", "label"],
                "properties": {"id": {"type": "string"}, "created": NULLABLE_STRING,
                               "label": {"type": "string"}}}},
        },
    },
    "NewToken": {
        "type": "object", "required": ["id", "token"],
        "properties": {"id": {"type": "string"}, "label": {"type": "string"},
                       "token": {"type": "string",
                                 "description": "Shown once: send it as 'Authorization: "
                                                "Bearer <token>'."}},
    },
}

SECURITY_SCHEMES = {
    "basic": {"type": "http", "scheme": "basic"},
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "An API token from POST /account/tokens."},
    "session": {"type": "apiKey", "in": "cookie", "name": "fileserver_session",
                "description": "The cookie POST /login sets."},
}

SHARED_RESPONSES = {
    "401": error("Credentials are needed, or the ones sent are wrong.",
                 # not sent to a page's scripts: no browser password dialog
                 {"WWW-Authenticate": header("The schemes this server takes.",
                                             required=False)}),
    "403": error("Not allowed: the account may not do this, or a browser sent a "
                 "cross-site request."),
    "429": error("Too many failed logins from this client; wait before trying again.",
                 {"Retry-After": header("Seconds to wait.", {"type": "integer", "minimum": 1})}),
    "login": redirect("A browser asking for a page without the right to read it goes to "
                      "the login page."),
}

# -- paths ----------------------------------------------------------------------------

FILE_NAME = path_param("name", "A file name; it may hold '/' (folders). Ending in '/' "
                       "names a folder: GET lists it and POST uploads into it.")
LISTING_QUERY = [
    query("prefix", "Only names starting with this (after the folder in the path)."),
    query("after", "The cursor: names after this one."),
    query("limit", "Files per page, at most 1000.", {"type": "integer"}),
    query("delimiter", "'/' folds names into folders.", {"type": "string", "enum": ["/"]}),
    query("owner", "Only the files of this user; 'me' for one's own."),
    FORMAT,
    query("sort", "HTML: the order of the page's entries, folders first (400 for another).",
          {"type": "string", "enum": ["name", "size", "modified"]}),
    query("order", "HTML: with sort, asc (the default) or desc.",
          {"type": "string", "enum": ["asc", "desc"]}),
]
LISTING = {"description": "One page of the listing, in name order.",
           "headers": {"ETag": header("The quoted hash of the listing sent."),
                       "Vary": header("Accept: the same URL has three formats.")},
           "content": {**json_content(ref("Listing")), **HTML,
                       "text/plain": {"schema": {"type": "string"}}}}
LISTING_OK = {200: LISTING, 304: {"description": "Unchanged (If-None-Match)."}}
FILE_INFO = json_content(ref("FileInfo"))
FILE_INFOS = json_content({"type": "array", "items": ref("FileInfo"), "minItems": 1})
URL_IMPORT = {"url": {"type": "string", "format": "uri",
                      "description": "Fetch this http(s) URL and store what it answers."},
              "name": {"type": "string", "description": "Store it under this name "
                                                        "(default: from the URL)."}}
EXISTS_DOC = ("When a name is taken: replace (the default) or keep both, storing the "
              "new file under the first free 'name (n).ext', which the answer names.")
EXISTS = query("exists", EXISTS_DOC, {"type": "string", "enum": ["replace", "keep"]})
UPLOAD_FORM = form({"exists": {"type": "string", "enum": ["replace", "keep"],
                               "description": EXISTS_DOC + " Before the files."},
                    "file": {"type": "array", "items": BINARY,
                             "description": "Files; each is stored under its filename."},
                    **URL_IMPORT}, multipart=True)
FILE_HEADERS = {
    "ETag": header("The quoted sha256 of the content."),
    "Last-Modified": header("When the file was last stored."),
    "Accept-Ranges": header("bytes", {"type": "string", "const": "bytes"}),
}


def core_paths() -> dict[str, dict]:
    uploaded = {201: {"description": "Stored; the list of files stored (URL imports: one).",
                      "content": FILE_INFOS},
                303: redirect("Browser forms go back to the folder's listing.")}
    upload_errors = (400, 413, 415, 502, 504, 507)  # 403 (shared): URL imports off, host refused
    return {
        "/": {"get": {"summary": "The listing's page", "operationId": "root",
                      "responses": responses({302: redirect("To /files/ (HTTP/1.0)."),
                                              303: redirect("To /files/.")})}},
        "/static/{path}": {"get": {
            "summary": "The assets the pages use", "operationId": "staticAsset",
            "parameters": [{**path_param("path", "An asset's path."),
                            "examples": {"stylesheet": {"value": "style.css"}}}],
            "responses": responses({200: {"description": "The asset.", "content": ANY_BYTES},
                                    206: {"description": "One byte range of it.",
                                          "content": ANY_BYTES},
                                    304: {"description": "Unchanged."}}, 404, 416)}},
        "/files": {"get": {"summary": "The root folder's URL without its slash",
                           "operationId": "filesRoot",
                           "responses": responses({308: redirect("To /files/.")})}},
        "/files/": {
            "get": {"summary": "List the files", "operationId": "listFiles",
                    "parameters": LISTING_QUERY,
                    "responses": responses(LISTING_OK, 400)},
            "post": {"summary": "Upload files (multipart) or import one from a URL",
                     "operationId": "uploadFiles",
                     "parameters": [EXISTS],
                     "description": "Multipart parts named 'file', or a form field 'url' "
                                    "(urlencoded or multipart) to fetch, when URL imports "
                                    "are enabled (403 otherwise).",
                     "requestBody": {"required": True, "content": {
                         **UPLOAD_FORM, **form(URL_IMPORT, ("url",))}},
                     "responses": responses(uploaded, *upload_errors)},
        },
        "/files/{name}": {
            "parameters": [FILE_NAME],
            "get": {
                "summary": "Download a file (or list a folder: name ending in '/')",
                "operationId": "getFile",
                "parameters": [
                    query("delete", "Present: an HTML page asking to confirm the delete, "
                          "whose form POSTs _method=DELETE.", allowEmptyValue=True),
                    query("download", "Present: send as an attachment.",
                          allowEmptyValue=True),
                    *LISTING_QUERY,
                    request_header("Range", "One range, bytes=a-b, a- or -n; others get 200."),
                    request_header("If-Range", "An ETag or date: the range only if unchanged."),
                    request_header("If-None-Match", "ETags: 304 if one matches."),
                    request_header("If-Modified-Since", "An HTTP date: 304 if not newer."),
                ],
                "responses": responses({
                    200: {"description": "The file's bytes with its stored Content-Type "
                                         "and ETag, Last-Modified, Accept-Ranges; or a folder's listing.",
                          "headers": {key: {**value, "required": False}
                                      for key, value in FILE_HEADERS.items()},
                          "content": ANY_BYTES},
                    206: {"description": "The range asked for.",
                          "headers": {**FILE_HEADERS, "Content-Range": header("bytes a-b/size")},
                          "content": ANY_BYTES},
                    304: {"description": "Unchanged since the client's copy.",
                          "headers": {"ETag": FILE_HEADERS["ETag"]}},
                    308: redirect("A folder's name without its slash: to the folder."),
                }, 400, 404, 416),
            },
            "head": {"summary": "A file's headers", "operationId": "headFile",
                     "responses": responses({200: {"description": "The GET headers, no body.",
                                                   "headers": FILE_HEADERS},
                                             304: {"description": "Unchanged."},
                                             308: redirect("To the folder.")},
                                            400, 404, 416)},
            "put": {"summary": "Store the raw body under this name", "operationId": "putFile",
                    "parameters": [EXISTS],
                    "requestBody": {"required": True, "description": "The content; its "
                                    "Content-Type is stored (guessed from the name if none).",
                                    "content": {"application/octet-stream": {"schema": BINARY}}},
                    "responses": responses({
                        201: {"description": "Stored under a new name.", "content": FILE_INFO,
                              "headers": {"Location": header("The file's URL.")}},
                        200: {"description": "Replaced.", "content": FILE_INFO},
                    }, 400, 413, 507)},
            "delete": {"summary": "Delete a file", "operationId": "deleteFile",
                       "responses": responses({204: {"description": "Deleted."}}, 400, 404)},
            "post": {"summary": "Upload into a folder (name ending in '/'), or delete a file "
                                "from a form (_method=DELETE)",
                     "operationId": "postFile",
                     "parameters": [EXISTS],
                     "description": "A folder takes what POST /files/ takes; a file's URL "
                                    "takes only _method=DELETE (the no-JavaScript delete "
                                    "button).",
                     "requestBody": {"required": True, "content": {
                         **UPLOAD_FORM,
                         **form({"_method": {"type": "string", "const": "DELETE"},
                                 **URL_IMPORT})}},
                     "responses": responses({**uploaded, 204: {"description": "Deleted."}},
                                            *upload_errors, 404)},
        },
        "/openapi.json": {"get": {
            "summary": "This description", "operationId": "openapi",
            "responses": responses({200: {"description": "The OpenAPI document.",
                                          "content": json_content({"type": "object",
                                                                   "required": ["openapi",
                                                                                "paths"]})}})}},
        **auth_paths(),
    }


def auth_paths() -> dict[str, dict]:
    """fileserver/login.py: the login page, logout, one's account and tokens."""
    login_form = form({"name": {"type": "string"}, "password": {"type": "string"},
                       "next": {"type": "string", "description": "Where to go after."}},
                      ("name", "password"))
    account = json_content(ref("Account"))
    revoked = {204: {"description": "Revoked."}}
    return {
        "/login": {
            "get": {"summary": "The login page", "operationId": "loginPage",
                    "parameters": [query("next", "Where to go after logging in.")],
                    "responses": responses({200: {"description": "The page.",
                                                  "content": HTML}})},
            "post": {"summary": "Log in: sets the session cookie", "operationId": "login",
                     "requestBody": {"required": True, "content": login_form},
                     "responses": responses({
                         200: {"description": "Logged in (API clients).",
                               "content": json_content({
                                   "type": "object", "required": ["name", "role"],
                                   "properties": {"name": {"type": "string"},
                                                  "role": {"type": "string"}}})},
                         303: redirect("Logged in (browsers): to 'next'.")}, 400)},
        },
        "/logout": {"post": {"summary": "Log out: ends the session", "operationId": "logout",
                             "responses": responses({204: {"description": "Logged out."},
                                                     303: redirect("To the login page.")})}},
        "/account": {"get": {
            "summary": "Who you are, and your API tokens", "operationId": "account",
            "parameters": [FORMAT],
            "responses": responses({200: {"description": "The account.",
                                          "content": {**account, **HTML}}})}},
        "/account/tokens": {"post": {
            "summary": "Make an API token", "operationId": "newToken",
            "requestBody": {"required": False,
                            "content": form({"label": {"type": "string"}})},
            "responses": responses({201: {"description": "The token, shown only this once "
                                                         "(browsers: the account page).",
                                          "content": {**json_content(ref("NewToken")),
                                                      **HTML}}}, 400)}},
        "/account/tokens/{token_id}": {
            "parameters": [path_param("token_id", "The token's id.")],
            "delete": {"summary": "Revoke an API token", "operationId": "revokeToken",
                       "responses": responses(revoked, 404)},
            "post": {"summary": "Revoke an API token from a form (_method=DELETE)",
                     "operationId": "revokeTokenForm",
                     "requestBody": {"required": True, "content": form(
                         {"_method": {"type": "string", "const": "DELETE"}}, ("_method",))},
                     "responses": responses({**revoked, 303: redirect("To the account page.")},
                                            404, 405)},
        },
    }


# -- the document ---------------------------------------------------------------------


def build(app: Bottle) -> dict:
    """The document for ``app``: the core paths and those its plugins added."""
    from . import __version__  # not at import time: the package imports this module

    paths, schemas = core_paths(), dict(SCHEMAS)
    for part in app.config.get(PLUGIN_PARTS) or ():
        paths.update(copy.deepcopy(part.get("paths", {})))
        schemas.update(part.get("schemas", {}))
    for path, item in paths.items():
        if path in PUBLIC or path.startswith("/static/"):
            continue
        for method in ("get", "head"):
            if method in item:
                item[method]["responses"].setdefault("303", {"$ref": "#/components/responses/login"})
    return {
        "openapi": OPENAPI,
        "info": {"title": "fileserver", "version": __version__,
                 "description": "A plugin-based HTTP file server. Errors are JSON "
                                "{error, status} for API clients and HTML for browsers "
                                "(Accept: text/html or ?format=html)."},
        # Anonymous access may be allowed: the empty requirement says so.
        "security": [{}, {"basic": []}, {"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES,
                       "responses": SHARED_RESPONSES},
    }


def route_path(rule: str) -> str:
    """A bottle rule as an OpenAPI path: ``/files/<name:name>`` -> ``/files/{name}``."""
    return re.sub(r"<([^:>]+)(?::[^>]*)?>", r"{\1}", rule)


def add_route(app: Bottle) -> None:
    """``GET /openapi.json``, built once on first use (after plugins added routes)."""
    built: list[str] = []

    def openapi_json() -> HTTPResponse:
        if not built:
            built.append(json.dumps(build(app)))
        return HTTPResponse(built[0], **{"Content-Type": "application/json"})

    app.route("/openapi.json", "GET", openapi_json)
