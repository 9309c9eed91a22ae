"""The feature-plugin interface (fileserver/features.py): every hook is documented
and exercised, typed options come from [plugin.NAME] and the environment with
messages naming their source, and the mosaic uses nothing but the interface."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import webtest

from fileserver import Settings, create_app
from fileserver import features as features_module
from fileserver.config import load_settings
from fileserver.documents import CollectionSpec
from fileserver.errors import BadRequest, ConfigError
from fileserver.features import HOOKS, Feature, all_collections, init_db_lines
from fileserver.options import Option, size, whole

ROOT = Path(__file__).resolve().parent.parent


class Probe(Feature):
    """A feature that uses every hook and records what the core did with it."""

    name = "probe"
    collections = (CollectionSpec("probe_notes", ("colour",)),)
    options = {"limit": Option(size, 1024, "bytes"), "count": Option(whole(1, 9), 3, "how many")}
    nav = (("/probe", "the probe"),)

    def __init__(self):
        self.calls: list[str] = []

    def openapi(self):
        self.calls.append("openapi")
        return {"paths": {"/probe": {"get": {"responses": {"200": {"description": "ok"}}}}}}

    def routes(self, app, context):
        self.calls.append("routes")

        def probe():
            if context.options["count"] > 5:
                raise BadRequest("too many")  # the vocabulary, not bottle.HTTPError
            note = context.documents.create("probe_notes", f"n{len(self.calls)}", {"colour": "red"})
            return {"options": context.options, "note": note.id,
                    "found": len(context.documents.find("probe_notes", "colour", ["red"]))}

        app.route("/probe", "GET", probe)

    def resumable(self, context):
        return {"endpoint": "/probe/uploads/", "chunk_size": context.options["limit"]}

    def init_db(self, context):
        self.calls.append("init_db")
        return [f"probe ready with {context.options['limit']} bytes"]

    def startup(self, context):
        self.calls.append("startup")
        context.state["started"] = True

    def shutdown(self, context):
        self.calls.append("shutdown")


def test_every_hook_is_documented_once():
    public = {name for name in vars(Feature) if not name.startswith("_")}
    assert public == set(HOOKS), public ^ set(HOOKS)
    for hook, text in HOOKS.items():
        assert text and "\n" not in text
        assert f"``{hook}``: {text}" in features_module.__doc__


def test_every_hook_is_exercised(make_store, monkeypatch):
    probe = Probe()
    monkeypatch.setattr(features_module, "installed_features", lambda: [probe])
    store = make_store()
    settings = Settings(plugin_options={"probe": {"limit": "2K"}})
    assert "probe_notes" in [spec.name for spec in all_collections()]
    app = create_app(settings, store=store, catchall=False)
    assert probe.calls == ["routes", "startup", "openapi"]
    client = webtest.TestApp(app)
    body = client.get("/probe").json
    assert body["options"] == {"limit": 2048, "count": 3} and body["found"] == 1
    page = client.get("/files/", headers={"Accept": "text/html"}).text
    assert 'href="/probe"' in page and "the probe" in page  # nav
    assert 'data-resumable="/probe/uploads/" data-chunk-size="2048"' in page
    assert "/probe" in client.get("/openapi.json").json["paths"]
    assert init_db_lines(settings, store) == ["probe: probe ready with 2048 bytes"]
    app.close()
    assert probe.calls[-1] == "shutdown"
    app.close()
    assert probe.calls.count("shutdown") == 1  # once, however often the app closes


def test_feature_options_name_their_source(tmp_path, monkeypatch):
    probe = Probe()
    monkeypatch.setattr(features_module, "installed_features", lambda: [probe])
    ini = tmp_path / "f.ini"
    ini.write_text("[plugin.probe]\ncount = 12\n")
    settings = load_settings(str(ini), env={})
    with pytest.raises(ConfigError, match=rf"plugin.probe count: '12' is not a number \(1-9\) "
                                          rf"\(from {re.escape(str(ini))}\)"):
        create_app(settings, catchall=False)
    env = {"FILESERVER_PLUGIN_PROBE_LIMIT": "lots", "FILESERVER_DATA_DIR": str(tmp_path / "d")}
    settings = load_settings(env=env)
    with pytest.raises(ConfigError, match="plugin.probe limit: 'lots' is not a size.*"
                                          r"\(from FILESERVER_PLUGIN_PROBE_LIMIT\)"):
        create_app(settings, catchall=False)
    ini.write_text("[plugin.probe]\ncolour = red\n")
    with pytest.raises(ConfigError, match="plugin.probe colour: unknown key"):
        create_app(load_settings(str(ini), env={}), catchall=False)


def test_backend_options_are_typed_with_their_source(tmp_path):
    env = {"FILESERVER_BACKEND_EMBEDDED_FSYNC": "sometimes",
           "FILESERVER_DATA_DIR": str(tmp_path / "d")}
    with pytest.raises(ConfigError, match=r"backend.embedded fsync: 'sometimes' is not on/off.*"
                                          r"\(from FILESERVER_BACKEND_EMBEDDED_FSYNC\)"):
        create_app(load_settings(env=env), catchall=False)
    env["FILESERVER_BACKEND_EMBEDDED_FSYNC"] = "off"
    app = create_app(load_settings(env=env), catchall=False)
    assert app.config["fileserver.store"].fsync is False
    app.close()


def test_the_mosaic_uses_only_the_interface():
    """No app.config keys, no bottle.HTTPError, no backend module: only the
    Feature hooks, the two contracts and the error vocabulary (the tus plugin too)."""
    for plugin in ("fileserver_mosaic", "fileserver_tus"):
        source = "\n".join(p.read_text() for p in (ROOT / "plugins" / plugin).glob("*.py"))
        assert "app.config" not in source and "HTTPError" not in source, plugin
        assert not re.search(r"fileserver_(embedded|couchdb|gridfs)", source), plugin
    from fileserver_mosaic import Mosaic, plugin

    assert isinstance(plugin, Mosaic)
    overridden = {name for name in HOOKS if name in vars(Mosaic)}
    assert overridden >= {"name", "collections", "options", "nav", "openapi", "routes",
                          "startup", "shutdown"}


def test_no_backend_knows_a_feature():
    for backend in ("fileserver_embedded", "fileserver_couchdb", "fileserver_gridfs"):
        for path in (ROOT / "plugins" / backend).glob("*.py"):
            source = path.read_text()
            assert "fileserver_mosaic" not in source and "fileserver.accounts" not in source, path
            assert not re.search(r"\bBucket|Features\b|records_read", source), path


def test_contracts_and_errors_import_without_bottle():
    import subprocess
    import sys

    code = ("import sys; import fileserver.store, fileserver.documents, fileserver.errors, "
            "fileserver.options, fileserver.testing.documents_contract; "
            "print('bottle' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "False", result.stderr
    assert inspect.getsourcefile(features_module).endswith("fileserver/features.py")
