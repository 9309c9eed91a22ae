"""Data written by fileserver 0.1 (tests/fixtures/v0_1, made by its own code with
fixtures/make_v0_1.py) keeps working: users, tokens, sessions' key, files and the
mosaic's tiles, on every backend."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path

import couchdb
import pymongo
import pytest
import webtest
from bson import json_util
from PIL import Image

from conftest import BACKENDS
from fileserver import Settings, create_app
from fileserver.features import all_collections
from test_mosaic_tiles import encode

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1"
TOKENS = json.loads((FIXTURES / "token.txt").read_text())


def _embedded(backend, tmp_path):
    with tarfile.open(FIXTURES / "embedded.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    options = {"path": str(tmp_path / "data")}
    return Settings(backend="embedded", backend_options={"embedded": options}), options


def _couchdb(backend, tmp_path, request):
    server = request.getfixturevalue("couchdb_server")
    settings, options = backend.settings(tmp_path, collections=[])
    db = couchdb.Server(server.admin_url)[options["database"]]
    for doc in json.loads((FIXTURES / "couchdb.json").read_text()):
        current = db.get(doc["_id"])
        if current is not None:
            doc["_rev"] = current.rev  # the design document 0.1's init-db wrote, as it was
        db.save(doc)
    return settings, options


def _gridfs(backend, tmp_path, request):
    server = request.getfixturevalue("mongodb_server")
    settings, options = backend.settings(tmp_path, collections=[])
    client = pymongo.MongoClient(server.uri)
    db = client[options["database"]]
    for name, docs in json_util.loads((FIXTURES / "gridfs.json").read_text()).items():
        db[name].delete_many({})
        if docs:
            db[name].insert_many(docs)
    client.close()
    return settings, options


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_data_of_version_0_1_keeps_working(name, request, tmp_path):
    backend = BACKENDS[name](request)
    if name == "embedded":
        settings, options = _embedded(backend, tmp_path)
    else:
        settings, options = {"couchdb": _couchdb, "gridfs": _gridfs}[name](backend, tmp_path,
                                                                           request)
    cls = backend.cls
    if name == "couchdb":
        # Before init-db: files are served as before (the views are missing).
        store = cls.from_config(settings, options)
        app = webtest.TestApp(create_app(settings, store=store, catchall=False))
        basic = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-password").decode()}
        assert app.get("/files/hello.txt", headers=basic).body == b"hello from 0.1\n"
        store.close()
    lines = cls.init_db(settings, options, admin_url=backend.admin_url,
                        collections=all_collections())
    store = cls.from_config(settings, options)
    try:
        app = webtest.TestApp(create_app(settings, store=store, catchall=False))
        basic = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-password").decode()}
        bearer = {"Authorization": f"Bearer {TOKENS[name]}"}
        app.get("/files/hello.txt", status=401)  # users exist: no anonymous access
        assert app.get("/files/hello.txt", headers=basic).body == b"hello from 0.1\n"
        assert app.get("/account", headers={**bearer, "Accept": "application/json"}).json[
            "name"] == "alice"
        assert app.get("/files/hello.txt", headers=bearer).body == b"hello from 0.1\n"
        library = app.get("/mosaic/tiles?format=json", headers=bearer).json
        assert library["count"] == 4
        made = app.post("/mosaic", upload_files=[("image", "s.png", encode(
            Image.new("RGB", (32, 32), (200, 30, 30))))], params={"cols": "2"},
            headers=bearer, status=201).json
        assert made["tiles_used"] >= 1 and made["index"]["records_read"] >= 1
    finally:
        store.close()
    # The first layout's tables are gone (copied, then removed or renamed).
    if name == "embedded":
        data = Path(options["path"])
        assert not (data / "accounts.sqlite3").exists() and not (data / "tiles.sqlite3").exists()
        assert (data / "accounts.sqlite3.upgraded").exists()
    elif name == "couchdb":
        db = couchdb.Server(request.getfixturevalue("couchdb_server").admin_url)[
            options["database"]]
        ids = [row.id for row in db.view("_all_docs")]
        assert not [i for i in ids if i.startswith(("r:", "t:"))], ids
        assert any("no longer used" in line for line in lines)
    else:
        client = pymongo.MongoClient(request.getfixturevalue("mongodb_server").uri)
        names = client[options["database"]].list_collection_names()
        client.close()
        assert "fs.records" not in names and "fs.tiles" not in names, names
