"""The mosaic tile library: features, ZIP/image ingestion, listing, delete.

HTTP tests run on every backend: where the backend has a tile index they
exercise it, elsewhere they check the clear refusal (couchdb and gridfs get
their native indexes in a later step).
"""

from __future__ import annotations

import io
import re
import struct
import time
import zipfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import webtest
from PIL import Image

from fileserver import Settings, create_app
from fileserver.documents import counting
from fileserver.store import PRIVATE_PREFIX

from fileserver_mosaic.features import (bucket_of, features, neighbour_buckets,
                                        normalise, square, srgb_to_lab)
from fileserver_mosaic.index import TILE_FOLDER, TileIndex, tile_path


# -- features (pure) -----------------------------------------------------------------


@pytest.mark.parametrize("rgb, lab", [((255, 255, 255), (100, 0, 0)), ((0, 0, 0), (0, 0, 0)),
                                      ((255, 0, 0), (53.24, 80.09, 67.20)),
                                      ((0, 0, 255), (32.30, 79.19, -107.86))])
def test_known_colours_in_lab(rgb, lab):
    assert np.allclose(srgb_to_lab(np.array(rgb)), lab, atol=0.05)
    assert np.allclose(features(Image.new("RGB", (8, 8), rgb)).lab, lab, atol=0.05)


def test_sub_grid_sees_structure_the_mean_does_not():
    image = Image.new("RGB", (30, 30), (0, 0, 0))
    image.paste((255, 255, 255), (15, 0, 30, 30))  # the right half white
    grid = np.array(features(image).grid).reshape(2, 2, 3)
    assert np.allclose(grid[:, 0, 0], 0, atol=0.01) and np.allclose(grid[:, 1, 0], 100, atol=0.01)
    assert 40 < features(image).lab[0] < 80  # the mean alone: a flat grey


def test_buckets_and_neighbours():
    buckets = {bucket_of(features(Image.new("RGB", (4, 4), c)).lab)
               for c in [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)]}
    assert len(buckets) == 5 and all(0 <= b < 640 for b in buckets)
    middle = bucket_of((50.0, 0.0, 0.0))
    assert middle in neighbour_buckets(middle) and len(neighbour_buckets(middle)) == 27
    assert len(neighbour_buckets(0)) == 8
    assert len(neighbour_buckets(middle, radius=2)) == 125


def test_normalise_modes_alpha_and_size():
    assert normalise(Image.new("RGBA", (4, 4), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
    assert normalise(Image.new("CMYK", (4, 4), (0, 0, 0, 0))).mode == "RGB"
    assert normalise(Image.new("I;16", (4, 4), 1000)).mode == "RGB"
    assert max(normalise(Image.new("RGB", (1000, 500))).size) == 256
    assert square(Image.new("RGB", (30, 12))).size == (12, 12)


# -- building uploads ----------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def exif_rotated_jpeg() -> bytes:
    """40x20 stored, orientation 6: shown (and normalised) as 20x40."""
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


def noise_jpeg() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=95)


def gradient() -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    return Image.fromarray(np.stack([ramp, ramp.T, np.full_like(ramp, 90)], axis=-1))


red_png = encode(Image.new("RGB", (16, 16), (255, 0, 0)), "PNG")

#: entry name -> bytes; ``None`` for a directory entry
LIBRARY = {
    "red.png": red_png,
    "blue.jpg": encode(Image.new("RGB", (16, 16), (0, 0, 255)), "JPEG"),
    "gradient.png": encode(gradient(), "PNG"),
    "clear.png": encode(Image.new("RGBA", (16, 16), (0, 0, 0, 0)), "PNG"),
    "palette.gif": encode(Image.new("RGB", (16, 16), (0, 160, 0)).convert("P"), "GIF"),
    "cmyk.jpg": encode(Image.new("CMYK", (16, 16), (0, 200, 200, 30)), "JPEG"),
    "grey.png": encode(Image.new("L", (16, 16), 77), "PNG"),
    "rotated.jpg": exif_rotated_jpeg(),
    "nested/": None,
    "nested/deeper/yellow.png": encode(Image.new("RGB", (16, 16), (250, 240, 10)), "PNG"),
    "../evil.png": encode(Image.new("RGB", (16, 16), (90, 20, 120)), "PNG"),
    "/abs/purple.png": encode(Image.new("RGB", (16, 16), (120, 20, 90)), "PNG"),
    "notes.txt": b"not an image at all\n",
    "truncated.jpg": noise_jpeg()[:1500],
    "__MACOSX/._red.png": b"\0\5\x16\7 mac resource fork",
    ".hidden.png": encode(Image.new("RGB", (16, 16), (1, 2, 3)), "PNG"),
    "copy/red.png": red_png,
    "red.bmp": encode(Image.new("RGB", (16, 16), (255, 0, 0)), "BMP"),
    "huge.png": forged_png(100_000, 100_000),
}
ADDED = {"red.png", "blue.jpg", "gradient.png", "clear.png", "palette.gif", "cmyk.jpg",
         "grey.png", "rotated.jpg", "nested/deeper/yellow.png", "../evil.png", "/abs/purple.png"}
REASONS = {"nested/": "directory", "notes.txt": "not an image",
           "truncated.jpg": "corrupt or truncated image",
           "__MACOSX/._red.png": "macOS metadata (__MACOSX/)", ".hidden.png": "hidden file",
           "copy/red.png": "duplicate", "red.bmp": "duplicate", "huge.png": "decompression bomb"}


def make_zip(path: Path, entries: dict[str, bytes | None]) -> bytes:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)  # kept verbatim, even ../ and leading /
            if data is None:
                info.external_attr = 0o40755 << 16 | 0x10
                archive.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    return path.read_bytes()


# -- the HTTP routes -----------------------------------------------------------------


def store_of(app):
    return app.app.config["fileserver.store"]


def index_of(app):
    return app.app.config["fileserver.features"].context("mosaic").state["index"]


@pytest.fixture
def tiles_app(app):
    return app


def listing(app, **query) -> dict:
    return app.get("/mosaic/tiles", {"format": "json", **query}).json


def reasons(report: dict) -> dict[str, str]:
    """entry -> the reason it was skipped for, from the report's groups."""
    return {e["entry"]: reason for reason, group in report["skipped"].items()
            for e in group["entries"]}


def finished(app, url: str) -> dict:
    deadline = time.monotonic() + 60
    while (job := app.get(url, headers={"Accept": "application/json"}).json)["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_zip_library_report_listing_and_delete(tiles_app, tmp_path):
    app = tiles_app
    data = make_zip(tmp_path / "library.zip", LIBRARY)
    report = app.post("/mosaic/tiles", upload_files=[("zip", "library.zip", data)],
                      status=201).json
    assert report["added"] == len(ADDED) and reasons(report) == REASONS
    assert report["repaired"] == [] and report["seconds"] >= 0
    # Grouped by reason, the most frequent first, each with its count and entries.
    groups = report["skipped"]
    assert list(groups)[0] == "duplicate"
    assert all(g["count"] == len(g["entries"]) for g in groups.values())
    assert sum(g["count"] for g in groups.values()) == len(REASONS)
    details = {e["entry"]: e["detail"] for g in groups.values() for e in g["entries"]}
    assert details["copy/red.png"].startswith("the same picture as 'red.png' (tile ")
    assert details["nested/"] == "" and "truncated" in details["truncated.jpg"]
    assert "pixels" in details["huge.png"]
    assert not (tmp_path.parent / "evil.png").exists() and not Path("/abs/purple.png").exists()

    body = listing(app)
    assert body["count"] == len(ADDED) and body["next"] is None
    by_source = {t["meta"]["source"]: t for t in body["tiles"]}
    assert set(by_source) == ADDED
    assert by_source["clear.png"]["features"]["lab"][0] == pytest.approx(100, abs=0.5)  # on white
    # Shown upright it is 20x40 with the lower half white; the tile is its
    # centred square, so the sub-grid is dark on top and light below.
    rotated = by_source["rotated.jpg"]
    assert (rotated["meta"]["width"], rotated["meta"]["height"]) == (20, 20)
    grid = np.array(index_of(app).get(rotated["id"]).features.grid)
    lightness = grid.reshape(2, 2, 3)[:, :, 0]
    assert lightness[0].max() < 10 and lightness[1].min() > 90
    assert by_source["red.png"]["features"]["lab"] == pytest.approx([53.2, 80.1, 67.2], abs=1.5)
    # The images are the server's private files, not a folder of the user's.
    names = {f.name for f in store_of(app).list("", limit=1000).files}
    assert names == {tile_path(t["id"]) for t in body["tiles"]}
    assert all(n.startswith(TILE_FOLDER) for n in names) and TILE_FOLDER.startswith(PRIVATE_PREFIX)
    assert not store_of(app).list("tiles/").files

    red = by_source["red.png"]
    path = urlsplit(red["url"]).path
    assert path == f"/mosaic/tiles/{red['id']}/image"
    tile = app.get(path)
    assert tile.content_type == "image/jpeg" and Image.open(io.BytesIO(tile.body)).size == (16, 16)
    app.get(path, headers={"If-None-Match": tile.headers["ETag"]}, status=304)
    app.get(f"/mosaic/tiles/{'0' * 64}/image", status=404)
    app.get("/mosaic/tiles/not-a-tile/image", status=404)

    # Paginated: every tile exactly once.
    seen, url = [], "/mosaic/tiles?format=json&limit=4"
    while url:
        page = app.get(url).json
        seen += [t["id"] for t in page["tiles"]]
        url = page["next"]
    assert sorted(seen) == sorted(t["id"] for t in body["tiles"])

    html = app.get("/mosaic/tiles", headers={"Accept": "text/html"})
    assert html.content_type == "text/html" and html.text.count('<img src="') == len(ADDED)

    gone = by_source["red.png"]["id"]
    app.delete(f"/mosaic/tiles/{gone}", status=204)
    app.delete(f"/mosaic/tiles/{gone}", status=404)
    app.delete("/mosaic/tiles/not-a-tile", status=404)
    assert listing(app)["count"] == len(ADDED) - 1
    assert not store_of(app).exists(tile_path(gone))
    app.get(f"/mosaic/tiles/{gone}/image", status=404)
    # Deleted, the same picture can come back.
    again = app.post("/mosaic/tiles", upload_files=[("image", "red.png", red_png)], status=201)
    assert again.json["tiles"] == [gone]


def test_raw_zip_body_and_single_images(tiles_app, tmp_path):
    app = tiles_app
    data = make_zip(tmp_path / "two.zip", {"a.png": LIBRARY["red.png"],
                                           "b.jpg": LIBRARY["blue.jpg"]})
    assert app.post("/mosaic/tiles", data, content_type="application/zip",
                    status=201).json["added"] == 2
    dup = app.post("/mosaic/tiles", upload_files=[("image", "again.png", red_png)], status=200).json
    assert dup["added"] == 0 and reasons(dup) == {"again.png": "duplicate"}
    assert dup["skipped"]["duplicate"]["entries"][0]["detail"].startswith("already in the library")
    bad = app.post("/mosaic/tiles", upload_files=[("image", "x.jpg", b"nope")], status=200).json
    assert reasons(bad) == {"x.jpg": "not an image"}
    bomb = app.post("/mosaic/tiles", status=413,
                    upload_files=[("image", "huge.png", forged_png(100_000, 100_000))])
    assert "decompression bomb" in bomb.json["error"]
    app.post("/mosaic/tiles", b"just text", content_type="text/plain", status=415)
    garbage = app.post("/mosaic/tiles", b"PK garbage", content_type="application/zip", status=400)
    assert "Not a readable ZIP" in garbage.json["error"]
    app.post("/mosaic/tiles", upload_files=[("other", "a.png", red_png)], status=400)
    green = encode(Image.new("RGB", (8, 8), (0, 200, 0)), "PNG")
    form = app.post("/mosaic/tiles", upload_files=[("image", "g.png", green)],
                    headers={"Accept": "text/html"}, status=303)  # the gallery's form
    assert re.fullmatch(r"(https?://[^/]+)?/mosaic/jobs/[0-9a-f]{32}", form.location)
    assert finished(app, form.location)["result"]["added"] == 1  # the job's page shows it
    assert listing(app)["count"] == 3


def test_reimporting_repairs_a_tile_whose_image_is_missing(tiles_app, tmp_path):
    app, store = tiles_app, store_of(tiles_app)
    data = make_zip(tmp_path / "two.zip", {"red.png": red_png, "blue.jpg": LIBRARY["blue.jpg"]})
    red = app.post("/mosaic/tiles", data, content_type="application/zip",
                   status=201).json["tiles"][0]
    store.delete(tile_path(red))  # as a crash, or a client of an earlier version, left it

    source = {"params": {"cols": "1"}, "upload_files": [("image", "s.png", red_png)]}
    refused = app.post("/mosaic", **source, status=409).json["error"]
    assert red in refused and "re-importing its ZIP restores it" in refused
    again = app.post("/mosaic/tiles", data, content_type="application/zip", status=201).json
    assert (again["added"], again["repaired"]) == (0, [red])
    assert reasons(again) == {"blue.jpg": "duplicate"}
    assert store.exists(tile_path(red)) and listing(app)["count"] == 2
    assert app.post("/mosaic", **source, status=201).json["tiles_used"] == 1
    third = app.post("/mosaic/tiles", data, content_type="application/zip", status=200).json
    assert third["repaired"] == [] and third["skipped"]["duplicate"]["count"] == 2


def test_the_report_page_has_one_line_per_reason(tiles_app, tmp_path):
    """A browser form lands on the job's page: without JavaScript, one line per
    reason with its count, the entries in a <details> element."""
    app = tiles_app
    entries = {"red.png": red_png, **{f"copy{i}/red.png": red_png for i in range(30)},
               "a.txt": b"text", "b.txt": b"more text"}
    data = make_zip(tmp_path / "dups.zip", entries)
    form = app.post("/mosaic/tiles", upload_files=[("zip", "dups.zip", data)],
                    headers={"Accept": "text/html"}, status=303)
    finished(app, form.location)
    page = app.get(form.location, headers={"Accept": "text/html"})
    report = page.html.select_one("#job .report")
    assert report.select_one(".summary").text.startswith("Added 1 tile, skipped 32 in ")
    lines = report.select("ul.skipped > li")
    assert [li.select_one("details > summary").text for li in lines] == [
        "duplicate: 30", "not an image: 2"]
    assert not lines[0].select_one("details").has_attr("open")  # folded until asked for
    items = [li.text for li in lines[0].select("details ul.entries li")]
    assert len(items) == 30 and items[0].startswith("copy0/red.png: the same picture as 'red.png'")
    assert [li.select_one("code").text for li in lines[1].select("li")] == ["a.txt", "b.txt"]


def test_the_source_picker_offers_the_users_images_and_no_tiles(tiles_app):
    app = tiles_app
    app.post("/mosaic/tiles", upload_files=[("image", "red.png", red_png)], status=201)
    for name in ("-first.png", "tiles/mine.png", "photos/a.png"):  # around the private files
        app.put(f"/files/{name}", red_png, content_type="image/png")
    page = app.get("/mosaic", headers={"Accept": "text/html"})
    offered = [o["value"] for o in page.html.select("select[name=source] option") if o["value"]]
    assert offered == ["-first.png", "photos/a.png", "tiles/mine.png"]


def test_zip_bomb_entries_are_skipped_without_writing_them(tiles_app, tmp_path):
    app = tiles_app
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb.bmp", "w", force_zip64=True) as entry:
            zeros = bytes(1 << 20)
            for _ in range(64):  # 64 MiB of zeros, about 64 KiB compressed
                entry.write(zeros)
        archive.writestr("ok.png", red_png)
    assert path.stat().st_size < 1 << 20
    report = app.post("/mosaic/tiles", path.read_bytes(), content_type="application/zip",
                      status=201).json
    assert report["added"] == 1
    assert reasons(report) == {"bomb.bmp": "compression ratio above the limit (zip bomb?)"}
    assert sum(f.size for f in store_of(app).list("", limit=1000).files) < 100_000


def test_limits_on_entries_sizes_and_pixels(make_store, tmp_path):
    """The bounds come from [plugin.mosaic] (typed options of the plugin)."""
    five = make_zip(tmp_path / "five.zip", {f"{i}.png": encode(Image.new("RGB", (40, 40),
                                                                         (i, 9, 9)), "PNG")
                                            for i in range(5)})
    store = make_store()

    def app_with(**limits):
        settings = Settings(plugin_options={"mosaic": {k: str(v) for k, v in limits.items()}})
        return webtest.TestApp(create_app(settings, store=store, catchall=False))

    app = app_with(max_entries=4)
    assert "5 entries" in app.post("/mosaic/tiles", five, content_type="application/zip",
                                   status=413).json["error"]
    app = app_with(max_archive=len(five) - 1)
    app.post("/mosaic/tiles", five, content_type="application/zip", status=413)
    app.post("/mosaic/tiles", upload_files=[("zip", "five.zip", five)], status=413)
    app = app_with(max_pixels=1000)  # 40x40 = 1600
    report = app.post("/mosaic/tiles", five, content_type="application/zip", status=200).json
    assert list(report["skipped"]) == ["decompression bomb"]
    assert report["skipped"]["decompression bomb"]["count"] == 5
    size = len(zipfile.ZipFile(io.BytesIO(five)).read("0.png"))
    app = app_with(max_total=3 * size)  # room for three entries
    report = app.post("/mosaic/tiles", five, content_type="application/zip", status=201).json
    assert report["added"] == 3
    (reason, group), = report["skipped"].items()
    assert reason == "uncompressed size above the limit (zip bomb?)" and group["count"] == 2
    assert all("remaining total" in e["detail"] for e in group["entries"])
    assert listing(app)["count"] == 3


def test_the_plugin_is_installed_through_its_entry_point():
    from importlib.metadata import entry_points

    assert "mosaic" in {e.name for e in entry_points(group="fileserver.plugins")}


def test_index_candidates_come_from_the_asked_buckets_in_one_batch(store):
    index = TileIndex(store.documents())
    colours = [(255, 0, 0), (250, 5, 5), (0, 0, 255), (0, 255, 0), (128, 128, 128)]
    made = {}
    for i, colour in enumerate(colours):
        f = features(Image.new("RGB", (6, 6), colour))
        assert index.add(f"{i:064x}", f, {"source": str(colour)})
        made[f"{i:064x}"] = f
    assert not index.add(f"{0:064x}", made[f"{0:064x}"], {})  # ids are unique
    assert index.count() == 5 and index.has_sha256(f"{2:064x}") == f"{2:064x}"
    assert index.has_sha256("f" * 64) is None
    with counting() as query:
        found = dict(index.candidates(neighbour_buckets(made[f"{0:064x}"].bucket)))
    assert set(found) == {f"{0:064x}", f"{1:064x}"} and found[f"{0:064x}"] == made[f"{0:064x}"]
    assert (query.queries, query.read) == (1, 2)  # one query; only the candidates were read
    assert index.candidates([]) == []
    assert [r.id for r in index.page(None, 2)] == [f"{0:064x}", f"{1:064x}"]
    assert [r.id for r in index.page(f"{3:064x}", 10)] == [f"{4:064x}"]
    assert index.remove(f"{4:064x}") and not index.remove(f"{4:064x}") and index.count() == 4
