"""Making mosaics: POST /mosaic, jobs, source images, and the index-use proof.

The route tests run on every backend with a tile index. Decoding tests
(shapes, modes, bombs) do not depend on the backend, so they run on the
embedded one only.
"""

from __future__ import annotations

import io
import time
import zipfile
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from fileserver_mosaic.features import srgb_to_lab
from fileserver_mosaic.index import TILE_FOLDER
from conftest import CONTRACT_BACKENDS
from fileserver.documents import counting
from test_mosaic_tiles import encode, forged_png, index_of, store_of


def zip_of(images: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in images.items():
            archive.writestr(name, data)
    return out.getvalue()


#: 64 solid tiles: every combination of 4 levels per channel, all distinct.
LEVELS = (0, 85, 170, 255)
SOLID = {(r, g, b): encode(Image.new("RGB", (12, 12), (r, g, b)))
         for r in LEVELS for g in LEVELS for b in LEVELS}


@pytest.fixture(params=sorted(CONTRACT_BACKENDS))
def backend(request):
    """Every backend, and the in-memory test backend: the mosaic needs only the two contracts."""
    return CONTRACT_BACKENDS[request.param](request)


@pytest.fixture
def library(app):
    report = app.post("/mosaic/tiles", zip_of({f"{c}.png": d for c, d in SOLID.items()}),
                      content_type="application/zip").json
    assert report["added"] == len(SOLID)
    return app


def fetch(app, url: str) -> Image.Image:
    res = app.get(urlsplit(url).path)
    return Image.open(io.BytesIO(res.body))


def make(app, image: bytes | None = None, filename: str = "src.png", status: int = 201,
         headers: dict | None = None, **fields):
    files = [("image", filename, image)] if image is not None else []
    fields = {k: str(v) for k, v in fields.items()}
    return app.post("/mosaic", fields, upload_files=files, status=status, headers=headers or {})


def near(pixel, rgb, tolerance: int = 6) -> bool:
    """Tiles are stored as JPEG, so solid colours come back off by a little."""
    return max(abs(p - c) for p, c in zip(pixel, rgb)) <= tolerance


def halves(left, right, size=(60, 30)) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


# -- the route, on every backend ----------------------------------------------------


def test_mosaic_from_an_upload_is_stored_and_described(library):
    app = library
    res = make(app, encode(halves((250, 5, 5), (5, 5, 250))), cols=8, tile=10, format="png")
    body = res.json
    assert res.headers["Location"] == body["url"]
    assert body["name"].startswith("mosaics/src-") and body["name"].endswith(".png")
    assert (body["cols"], body["rows"]) == (8, 4) and body["seconds"] >= 0
    info = store_of(app).info(body["name"])
    assert info.content_type == "image/png"
    mosaic = fetch(app, body["url"]).convert("RGB")
    assert mosaic.size == (80, 40)
    # Perceptual: the red half is made of the red tile, the blue half of the blue one.
    assert near(mosaic.getpixel((5, 5)), (255, 0, 0))
    assert near(mosaic.getpixel((75, 35)), (0, 0, 255))
    assert body["tiles_used"] == 2 and body["index"]["images_read"] == 2


def test_mosaic_from_a_stored_file_async_with_a_job(library):
    app = library
    app.put("/files/photos/sky.jpg", encode(halves((0, 170, 255), (255, 255, 255)), "JPEG"))
    res = app.post("/mosaic", {"source": "photos/sky.jpg", "cols": "6", "tile": "8"},
                   headers={"Prefer": "respond-async"}, status=202)
    job_url = res.headers["Location"]
    assert res.json["url"] == job_url and res.json["state"] in ("queued", "running", "done")
    deadline = time.monotonic() + 60
    while (job := app.get(job_url).json)["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["state"] == "done" and job["status"] == 201 and job["error"] is None
    assert job["done"] == job["total"] == 6 * 3 and job["stage"] == "rendering"
    result = job["result"]
    assert result["name"].startswith("mosaics/sky-6x3-") and result["name"].endswith(".jpg")
    assert fetch(app, result["url"]).size == (48, 24)
    page = app.get(job_url, headers={"Accept": "text/html"})
    assert "done" in page.text and result["name"] in page.text


def test_max_repeats_is_honoured(library):
    app = library
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (32, 1, 3))
    res = make(app, encode(Image.fromarray(gradient)), cols=8, tile=6, max_repeats=1).json
    assert (res["cols"], res["rows"]) == (8, 4) and res["tiles_used"] == 32
    mosaic = np.asarray(fetch(app, res["url"]).convert("RGB"), dtype=float)
    cells = mosaic.reshape(4, 6, 8, 6, 3).mean(axis=(1, 3)).reshape(-1, 3)
    # Each of the 32 cells shows a different solid tile (JPEG shifts colours a little).
    distinct = {tuple(int(round(v / 85.0)) for v in cell) for cell in cells}
    assert len(distinct) == 32
    unlimited = make(app, encode(Image.fromarray(gradient)), cols=8, tile=6).json
    assert unlimited["tiles_used"] < 32  # without the limit, tiles repeat
    refused = make(app, encode(Image.fromarray(gradient)), cols=20, max_repeats=1, status=409)
    assert "max_repeats=1" in refused.json["error"] and "64 tiles" in refused.json["error"]


def test_blend_overlays_the_source(library):
    app = library
    source = Image.new("RGB", (40, 40), (128, 60, 200))
    res = make(app, encode(source), cols=4, tile=10, blend=100, format="png").json
    assert np.abs(np.asarray(fetch(app, res["url"]), dtype=int) - (128, 60, 200)).max() <= 1


@pytest.mark.parametrize("fields, word", [({"tile": "x"}, "tile must be a whole number"),
                                          ({"tile": "2"}, "tile must be between"),
                                          ({"cols": "0"}, "cols must be between"),
                                          ({"blend": "101"}, "blend must be between"),
                                          ({"format": "gif"}, "format must be jpeg or png")])
def test_bad_parameters_are_named(library, fields, word):
    res = make(library, encode(Image.new("RGB", (8, 8))), status=400, **fields)
    assert word in res.json["error"]
    assert not store_of(library).list("mosaics/").files


def test_missing_sources_are_clear(library):
    app = library
    assert "No source image" in app.post("/mosaic", {"cols": "4"}, status=400).json["error"]
    app.post("/mosaic", {"source": "nope.jpg"}, status=404)
    assert app.post("/mosaic", b"x", content_type="text/plain", status=415).json["error"]
    raw = app.post("/mosaic?cols=4&tile=4&name=raw.png", encode(Image.new("RGB", (8, 8))),
                   content_type="image/png", status=201).json
    assert raw["name"].startswith("mosaics/raw-4x4-")


def test_an_empty_library_is_refused(app):
    res = make(app, encode(Image.new("RGB", (8, 8))), status=409)
    assert "library is empty" in res.json["error"]


def test_tile_upload_as_a_job_reports_progress(library):
    app = library
    extra = {f"more/{i}.png": encode(Image.new("RGB", (9, 9), (i * 20, 40, 90))) for i in range(5)}
    res = app.post("/mosaic/tiles", zip_of(extra), content_type="application/zip",
                   headers={"Prefer": "respond-async"}, status=202)
    deadline = time.monotonic() + 60
    while (job := app.get(res.headers["Location"]).json)["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["state"] == "done" and job["status"] == 201 and job["result"]["added"] == 5
    assert job["stage"] == "indexing" and job["total"] == 5
    assert app.get("/mosaic/tiles?format=json").json["count"] == len(SOLID) + 5
    app.get("/mosaic/jobs/" + "0" * 32, status=404)


# -- source images (decoding does not depend on the backend) -------------------------

embedded_only = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def exif_rotated(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    return encode(image, "JPEG", exif=exif.tobytes())


def gradient_jpeg(width: int, height: int) -> bytes:
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    row = np.stack([ramp, ramp[::-1], np.full_like(ramp, 128)], axis=-1)
    return encode(Image.fromarray(np.broadcast_to(row, (height, width, 3)).copy()), "JPEG")


@embedded_only
@pytest.mark.parametrize("size, cols, rows", [((7, 5), 7, 5), ((640, 100), 32, 5),
                                              ((400, 2400), 10, 60), ((8000, 5000), 40, 25)])
def test_any_rectangle_and_size(library, size, cols, rows):
    res = make(library, gradient_jpeg(*size), filename="s.jpg", cols=cols, tile=4).json
    assert (res["cols"], res["rows"]) == (cols, rows)
    assert fetch(library, res["url"]).size == (cols * 4, rows * 4)


def sixteen_bit() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    return encode(Image.fromarray(ramp))  # mode I;16


@embedded_only
@pytest.mark.parametrize("name, data", [
    ("grey.png", encode(Image.new("L", (16, 8), 200))),
    ("palette.gif", encode(Image.new("RGB", (16, 8), (255, 0, 0)).convert("P"), "GIF")),
    ("alpha.png", encode(Image.new("RGBA", (16, 8), (0, 0, 0, 0)))),
    ("cmyk.jpg", encode(Image.new("CMYK", (16, 8), (0, 255, 255, 0)), "JPEG")),
    ("deep.png", sixteen_bit()),
])
def test_every_mode(library, name, data):
    res = make(library, data, filename=name, cols=4, tile=4, format="png").json
    mosaic = fetch(library, res["url"])
    assert mosaic.mode == "RGB" and mosaic.size[0] == 16
    if name == "alpha.png":  # transparent is flattened on white: white tiles
        assert near(mosaic.getpixel((0, 0)), (255, 255, 255))


@embedded_only
def test_exif_rotation_is_honoured(library):
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue: shown at the bottom
    res = make(library, exif_rotated(stored), filename="r.jpg", cols=2, tile=5, format="png").json
    assert (res["cols"], res["rows"]) == (2, 4)
    mosaic = fetch(library, res["url"]).convert("RGB")
    assert near(mosaic.getpixel((2, 2)), (255, 0, 0))
    assert near(mosaic.getpixel((7, 17)), (0, 0, 255))


@embedded_only
def test_bad_sources_get_clear_errors_and_nothing_is_stored(library):
    app = library
    res = make(app, b"%PDF-1.4 not an image", filename="doc.jpg", status=400)
    assert "doc.jpg: not an image" in res.json["error"]
    truncated = gradient_jpeg(300, 200)[:700]
    assert "truncated" in make(app, truncated, filename="t.jpg", status=400).json["error"]
    bomb = make(app, forged_png(30_000, 30_000), filename="bomb.png", status=413)
    assert "decompression bomb" in bomb.json["error"]
    huge = make(app, encode(Image.new("RGB", (8, 8))), cols=400, tile=256, status=413)
    assert "more than the limit" in huge.json["error"]
    assert "lower cols or tile" in huge.json["error"]
    # An async job reports the same refusal as a failed job.
    job_url = make(app, b"junk", filename="j.png", status=202,
                   headers={"Prefer": "respond-async"}).headers["Location"]
    deadline = time.monotonic() + 30
    while (job := app.get(job_url).json)["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["state"] == "failed" and job["status"] == 400 and "not an image" in job["error"]
    assert not store_of(app).list("mosaics/").files


# -- the index does the searching ---------------------------------------------------


@pytest.fixture(scope="session")
def big_library_zip() -> bytes:
    """3,000 distinct 8x8 tiles spread over the whole sRGB cube."""
    rng = np.random.default_rng(7)
    images = {}
    for i in range(3000):
        base = rng.integers(0, 256, 3)
        pixels = np.clip(base + rng.integers(-25, 26, (8, 8, 3)), 0, 255).astype(np.uint8)
        images[f"lib/{i:04d}.png"] = encode(Image.fromarray(pixels))
    return zip_of(images)


def test_matching_reads_a_fraction_of_the_library_through_the_index(app, backend,
                                                                    big_library_zip, monkeypatch):
    store, index = store_of(app), index_of(app)
    report = app.post("/mosaic/tiles", big_library_zip, content_type="application/zip").json
    assert report["added"] >= 3000 and index.count() >= 3000

    # A source in a narrow band of warm browns: a small part of the colour space.
    x = np.linspace(0, 1, 120)[None, :, None]
    y = np.linspace(0, 1, 80)[:, None, None]
    source = (np.array([120, 70, 30]) + 60 * x * np.array([1, 0.6, 0.3])
              + 20 * np.sin(9 * y) * np.array([1, 1, 1]))
    source_png = encode(Image.fromarray(np.clip(source, 0, 255).astype(np.uint8)))

    opened: list[str] = []
    real_open = store.open

    def counting_open(name, *args, **kwargs):
        opened.append(name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(store, "open", counting_open)
    calls, reads, real_candidates = [], [], index.candidates

    def counting_candidates(buckets):
        with counting() as query:
            found = real_candidates(buckets)
        calls.append(len(buckets))
        reads.append(query.read)
        return found

    monkeypatch.setattr(index, "candidates", counting_candidates)
    res = make(app, source_png, cols=30, tile=8).json
    read = sum(reads)

    assert 1 <= len(calls) <= 5, calls  # a handful of batched queries, not one per cell
    assert read == res["index"]["records_read"] and 0 < read < 0.1 * index.count(), read
    tiles_opened = [n for n in opened if n.startswith(TILE_FOLDER)]
    assert len(tiles_opened) == len(set(tiles_opened)) == res["tiles_used"] > 1
    assert res["index"]["images_read"] == res["tiles_used"]

    # And the choice is good: the mosaic's cells are close to the source's.
    mosaic = np.asarray(fetch(app, res["url"]).convert("RGB"), dtype=float)
    rows = res["rows"]
    got = srgb_to_lab(mosaic.reshape(rows, 8, 30, 8, 3).mean(axis=(1, 3)))
    small = Image.open(io.BytesIO(source_png)).resize((30, rows), Image.Resampling.BOX)
    want = srgb_to_lab(np.asarray(small, dtype=float))
    assert np.median(np.linalg.norm(got - want, axis=-1)) < 12
