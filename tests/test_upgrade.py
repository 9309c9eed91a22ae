"""Data written by fileserver 0.1 (tests/fixtures/v0_1, made by its own code with
fixtures/make_v0_1.py) keeps working: users, tokens, sessions' key, files and the
mosaic's tiles, on every backend; and the tile images earlier versions kept
among the user's files (tiles/) move to the server's private files."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import couchdb
import pymongo
import pytest
import webtest
from bson import json_util
from PIL import Image

from conftest import BACKENDS
from fileserver import Settings, create_app
from fileserver.features import all_collections
from fileserver_mosaic.index import LEGACY_FOLDER, move_legacy_images, tile_path
from test_mosaic import zip_of
from test_mosaic_tiles import encode, index_of

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
        # The images left tiles/ (no such folder any more) for the private files.
        assert not store.list(LEGACY_FOLDER).files
        assert store.list("", delimiter="/").folders == [".fileserver/"]
        for tile in library["tiles"]:
            assert store.info(tile_path(tile["id"])).owner == "alice"
            image = app.get(urlsplit(tile["url"]).path, headers=bearer)
            assert Image.open(io.BytesIO(image.body)).size == (32, 32)
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


# -- the move out of tiles/, on every backend --------------------------------------------

SOLID = {f"{n}.png": encode(Image.new("RGB", (16, 16), (60 * n, 200 - 60 * n, 90)))
         for n in range(4)}


def _legacy(store, tile_id: str) -> str:
    """Put a tile's image back where an earlier version kept it; its old name."""
    info, old = store.info(tile_path(tile_id)), f"{LEGACY_FOLDER}{tile_id}.jpg"
    with store.open(info.name) as fp:
        store.put(old, fp, content_type=info.content_type, owner=info.owner, meta=info.meta)
    return old


def _app(store):
    return webtest.TestApp(create_app(Settings(), store=store, catchall=False))


def _mosaic(app) -> dict:
    source = encode(Image.new("RGB", (16, 16), (60, 140, 90)))
    return app.post("/mosaic", {"cols": "2"}, upload_files=[("image", "s.png", source)],
                    status=201).json


def test_tile_images_move_out_of_the_users_files(make_store):
    store = make_store()
    app = _app(store)
    ids = app.post("/mosaic/tiles", zip_of(SOLID), content_type="application/zip",
                   status=201).json["tiles"]
    # As an earlier version left them: one image only under tiles/, one in both
    # places (a crash between copy and delete); and files of the user's there.
    only_old = _legacy(store, ids[0])
    store.delete(tile_path(ids[0]))
    both = _legacy(store, ids[1])
    users = {"tiles/notes.txt": {}, f"tiles/{'a' * 64}.jpg": {},  # uploaded through /files
             f"tiles/{'b' * 64}.jpg": {"mosaic": "tile"}}  # a tile deleted from the index
    for name, meta in users.items():
        store.put(name, io.BytesIO(b"mine"), meta=meta)
    _mosaic(app)  # both copies: the library works

    app = _app(store)  # a start moves them
    assert {f.name for f in store.list(LEGACY_FOLDER).files} == set(users)
    assert not store.exists(only_old) and not store.exists(both)
    assert all(store.exists(tile_path(i)) for i in ids)
    assert _mosaic(app)["tiles_used"] >= 1
    assert move_legacy_images(store, index_of(app)) == 0  # and the next start has nothing to do


def test_a_crash_between_copy_and_delete_leaves_a_working_library(make_store, monkeypatch):
    store = make_store()
    app = _app(store)
    ids = app.post("/mosaic/tiles", zip_of(SOLID), content_type="application/zip",
                   status=201).json["tiles"]
    for tile_id in ids:
        _legacy(store, tile_id)
        store.delete(tile_path(tile_id))

    def crash(name):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(store, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        move_legacy_images(store, index_of(app))
    monkeypatch.undo()
    moved = tile_path(sorted(ids)[0])  # the first, by name: copied, its old name kept
    assert store.exists(moved) and store.exists(f"{LEGACY_FOLDER}{sorted(ids)[0]}.jpg")
    assert move_legacy_images(store, index_of(app)) == len(ids)
    assert not store.list(LEGACY_FOLDER).files
    assert _mosaic(app)["tiles_used"] >= 1
