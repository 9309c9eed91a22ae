"""``/openapi.json`` tells the truth: it describes exactly the routes the app
has, it is a valid OpenAPI 3 document, and real answers fit its schemas.

The OpenAPI meta-schema check and the JSON Schema validator come with
schemathesis (its bundled meta-schemas, and ``jsonschema_rs``), which the
test extra installs for tests/test_schemathesis.py anyway.
"""

from __future__ import annotations

import base64
import json
import re

import jsonschema_rs
import pytest
import schemathesis
import webtest

from fileserver import Settings, create_app
from fileserver.openapi import PLUGIN_PARTS, route_path

METHODS = {"get", "put", "post", "delete", "head", "patch", "options", "trace"}
ERROR_HEADERS = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def plain_app(tmp_path_factory):
    """An app on the embedded store: the routes do not depend on the backend."""
    app = create_app(Settings(data_dir=str(tmp_path_factory.mktemp("openapi"))))
    yield app
    app.config["fileserver.store"].close()


@pytest.fixture(scope="module")
def spec(plain_app) -> dict:
    return webtest.TestApp(plain_app).get("/openapi.json").json


def described(spec: dict) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in spec["paths"].items()
            for method in item if method in METHODS}


def unnamed(operations: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Path parameters without their names: OpenAPI forbids two paths that differ
    only there, and bottle's POST /files/<path:name> calls it ``path`` where the
    other /files/ routes say ``name``."""
    return {(re.sub(r"\{[^}]*\}", "{}", path), method) for path, method in operations}


def test_served_as_json(plain_app):
    res = webtest.TestApp(plain_app).get("/openapi.json")
    assert res.content_type == "application/json"
    assert res.json["openapi"].startswith("3.")
    assert res.json["paths"], "the document describes no path"


def test_every_route_is_described_and_every_description_is_a_route(plain_app, spec):
    routes = unnamed({(route_path(r.rule), r.method) for r in plain_app.routes})
    # HEAD is implied by GET (bottle answers it from the GET route).
    documented = unnamed(described(spec))
    heads = {path for path, method in documented if method == "HEAD"}
    documented -= {(path, "HEAD") for path in heads}
    assert routes - documented == set(), "routes missing from fileserver/openapi.py"
    assert documented - routes == set(), "described operations the app does not have"
    assert {(path, "GET") for path in heads} <= routes, "HEAD described without a GET route"


def test_mosaic_paths_come_with_the_plugin(plain_app, tmp_path):
    assert "/mosaic/tiles" in webtest.TestApp(plain_app).get("/openapi.json").json["paths"]
    bare = create_app(Settings(data_dir=str(tmp_path)))
    bare.config[PLUGIN_PARTS] = ()  # as if no plugin had added its part
    try:
        paths = webtest.TestApp(bare).get("/openapi.json").json["paths"]
    finally:
        bare.config["fileserver.store"].close()
    assert not any(p.startswith("/mosaic") for p in paths)
    assert "/files/{name}" in paths


def test_valid_openapi_3(spec):
    schemathesis.openapi.from_dict(spec).validate()  # raises with the first violation


def test_every_ref_resolves_and_every_path_parameter_is_declared(spec):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(spec, node)  # KeyError names the dangling reference
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    for path, item in spec["paths"].items():
        wanted = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, op in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in item.get("parameters", []) + op.get("parameters", [])
                        if p["in"] == "path"}
            assert declared == wanted, f"{method.upper()} {path} declares {declared}"


def test_every_operation_describes_the_authentication_answers(spec):
    assert {} in spec["security"], "anonymous access must be allowed by the document"
    assert set(spec["components"]["securitySchemes"]) == {"basic", "bearer", "session"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                assert {"401", "403", "429"} <= set(op["responses"]), f"{method} {path}"


# -- real answers against the document ---------------------------------------------------


def resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target = spec
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


def check(spec: dict, res: webtest.TestResponse, path: str, method: str) -> None:
    """``res`` is an answer the document allows for ``method path``."""
    where = f"{method} {path} -> {res.status}"
    answers = spec["paths"][path][method.lower()]["responses"]
    answer = answers.get(str(res.status_int)) or answers.get("default")
    assert answer is not None, f"{where}: status not described (described: {sorted(answers)})"
    answer = resolve(spec, answer)
    for name, declared in answer.get("headers", {}).items():
        if resolve(spec, declared).get("required"):
            assert name in res.headers, f"{where}: required header {name} missing"
    content = answer.get("content")
    if not content:
        assert res.body == b"", f"{where}: a body where the document describes none"
        return
    media = res.content_type
    family = media.split("/")[0] + "/*"
    match = content.get(media) or content.get(family) or content.get("*/*")
    assert match is not None, f"{where}: Content-Type {media} not described ({sorted(content)})"
    if media == "application/json" and "schema" in match:
        schema = {**match["schema"], "components": spec["components"]}
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
        errors = [f"{e.message} at {list(e.instance_path)}" for e in validator.iter_errors(res.json)]
        assert not errors, f"{where}: {errors}\n{json.dumps(res.json)[:2000]}"


@pytest.fixture
def call(make_app, spec):
    """``call(method, url, path, status=N, body=..., **webtest options)``: make the
    request on this backend's app, expect ``status``, check the answer against
    the document's ``method path`` (``body`` is the body or form fields)."""
    app = make_app(max_size=1000)

    def call(method: str, url: str, path: str, *, status: int, body=None,
             **kwargs) -> webtest.TestResponse:
        if body is not None:
            kwargs["params"] = body
        res = getattr(app, method.lower())(url, expect_errors=True, **kwargs)
        assert res.status_int == status, f"{method} {url}: {res.status}\n{res.text[:500]}"
        check(spec, res, path, method)
        return res

    return call


ONE = "/files/{name}"


def test_files_answers_fit_the_document(call):
    call("PUT", "/files/a.txt", ONE, status=201, body=b"hello world",
         headers={"Content-Type": "text/plain"})
    call("PUT", "/files/a.txt", ONE, status=200, body=b"hello again")
    call("POST", "/files/album/", ONE, status=201, upload_files=[("file", "b.png", b"\x89PNG")])
    call("POST", "/files/", "/files/", status=201,
         upload_files=[("file", "c.bin", b"\x00\x01"), ("file", "d.txt", b"d")])

    call("GET", "/files/", "/files/", status=200)
    page = call("GET", "/files/?limit=2&delimiter=/&format=json", "/files/", status=200)
    assert page.json["next"] and page.json["folders"] == ["album/"]
    call("GET", "/files/album/", ONE, status=200)
    call("GET", "/files/a.txt?download", ONE, status=200)
    head = call("HEAD", "/files/a.txt", ONE, status=200)
    call("GET", "/files/a.txt", ONE, status=206, headers={"Range": "bytes=0-4"})
    call("GET", "/files/a.txt", ONE, status=304, headers={"If-None-Match": head.headers["ETag"]})
    call("GET", "/files/a.txt", ONE, status=416, headers={"Range": "bytes=500-"})
    call("DELETE", "/files/a.txt", ONE, status=204)
    call("POST", "/files/d.txt", ONE, status=204, body={"_method": "DELETE"})


def test_error_answers_fit_the_document(call):
    call("GET", "/files/missing.txt", ONE, status=404, headers=ERROR_HEADERS)
    call("DELETE", "/files/missing.txt", ONE, status=404)
    call("PUT", "/files/bad%01name", ONE, status=400, body=b"x")
    call("PUT", "/files/big.bin", ONE, status=413, body=b"x" * 1001)
    call("GET", "/files/big.bin", ONE, status=404)  # nothing half-stored
    call("GET", "/files/?limit=many", "/files/", status=400)
    call("POST", "/files/", "/files/", status=415, body=b"x", content_type="text/plain")
    call("POST", "/files/", "/files/", status=400, upload_files=[("other", "x.txt", b"x")])
    # URL imports are off unless configured: 403, before anything is fetched.
    call("POST", "/files/", "/files/", status=403, body={"url": "https://example.org/a"})
    # Browsers get the error page, which the document describes too.
    page = call("GET", "/files/missing.txt", ONE, status=404, headers={"Accept": "text/html"})
    assert page.content_type == "text/html"


def test_other_answers_fit_the_document(call):
    call("GET", "/openapi.json", "/openapi.json", status=200)
    call("GET", "/", "/", status=302)  # WebTest speaks HTTP/1.0: bottle's redirect is a 302
    call("GET", "/static/style.css", "/static/{path}", status=200)
    call("GET", "/static/nothing.css", "/static/{path}", status=404)
    call("GET", "/mosaic/tiles", "/mosaic/tiles", status=200)
    call("GET", "/mosaic", "/mosaic", status=200)
    call("GET", "/mosaic/jobs/nope", "/mosaic/jobs/{job_id}", status=404)
    call("POST", "/mosaic", "/mosaic", status=404, body={"source": "a.png"})
    call("POST", "/mosaic", "/mosaic", status=400, body={"cols": "3"})  # no source
    call("POST", "/mosaic/tiles", "/mosaic/tiles", status=415, body=b"x",
         content_type="text/plain")
    call("DELETE", "/mosaic/tiles/" + "0" * 64, "/mosaic/tiles/{tile_id}", status=404)
    call("GET", "/login", "/login", status=200)
    call("GET", "/account", "/account", status=401)  # nobody is logged in


def test_authentication_answers_fit_the_document(call):
    def basic(text: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}

    call("GET", "/files/", "/files/", status=400, headers={"Authorization": "Basic a"})
    for _ in range(5):  # the throttle lets a few wrong guesses through
        wrong = call("GET", "/files/", "/files/", status=401, headers=basic("nobody:wrong"))
    assert "WWW-Authenticate" in wrong.headers
    call("GET", "/files/", "/files/", status=429, headers=basic("nobody:wrong"))
