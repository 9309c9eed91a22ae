"""The mosaic pages (/mosaic/tiles, /mosaic, /mosaic/jobs/<id>) in headless Chromium.

Same setup as test_browser.py: Debian's /usr/bin/chromium through Playwright,
against a real `fileserver serve` on every backend. A backend that has no tile
index yet (GET /mosaic/tiles answers 501) is skipped; its refusal is tested in
test_mosaic_tiles.py.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import zipfile
from urllib.parse import quote, unquote

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from test_browser import new_page, put, status_of

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

# Every state the job panels (#tiles-job, #mosaic-job) go through, in order:
# a snapshot of both steps (bar value/max, label, hidden) at each change.
PANEL_RECORDER = """
(() => {
  window.panelLog = [];
  const snap = (step) => {
    if (!step) return null;
    const bar = step.querySelector("progress");
    return {hidden: step.hidden, cls: step.className,
            label: step.querySelector(".label").textContent,
            value: bar.hasAttribute("value") ? bar.value : null, max: bar.max};
  };
  const record = () => {
    const panel = document.querySelector("#tiles-job, #mosaic-job");
    if (!panel || panel.hidden) return;
    const entry = {state: panel.dataset.state || "",
                   upload: snap(panel.querySelector(".upload-step")),
                   work: snap(panel.querySelector(".work-step"))};
    const last = window.panelLog[window.panelLog.length - 1];
    if (!last || JSON.stringify(last) !== JSON.stringify(entry)) window.panelLog.push(entry);
  };
  new MutationObserver(record).observe(document, {subtree: true, childList: true,
                                                  attributes: true, characterData: true});
})();
"""

# The colour of two pixels of a loaded <img> (a same-origin image: readable).
PIXELS = """(img, points) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  return points.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
}"""

COLOURS = {"red": (250, 10, 10), "blue": (10, 10, 250), "green": (10, 200, 10),
           "yellow": (250, 240, 10), "black": (5, 5, 5), "white": (250, 250, 250)}


def png(colour, size=(24, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def halves(left, right, size=(120, 80)) -> bytes:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def tiles_zip(path) -> str:
    """Six solid tiles, a duplicate and a text file (both skipped, with reasons)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, colour in COLOURS.items():
            archive.writestr(f"{name}.png", png(colour))
        archive.writestr("copy/red.png", png(COLOURS["red"]))
        archive.writestr("readme.txt", "these are tiles\n")
    return str(path)


def library(base: str) -> dict:
    proc = subprocess.run(["curl", "-sS", "--fail-with-body", base + "mosaic/tiles?format=json"],
                          capture_output=True, timeout=30, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


def near(pixel, rgb, tolerance: int = 14) -> bool:
    """Tiles are stored as JPEG, so solid colours come back off by a little."""
    return max(abs(p - c) for p, c in zip(pixel, rgb)) <= tolerance


@pytest.fixture
def server(live_server, backend):
    """The live server, on a backend that keeps a tile library."""
    if status_of(live_server.url + "mosaic/tiles?format=json") == 501:
        pytest.skip(f"{backend.name} has no tile index "
                    "(its refusal is tested in test_mosaic_tiles)")
    return live_server


def check_report(report) -> None:
    """The report of tiles_zip: one line per reason with its count; the entries
    folded away in a <details> until its line is clicked."""
    expect(report.locator(".summary")).to_have_text(
        re.compile(r"Added 6 tiles, skipped 2 in [\d.]+ s\."))
    lines = report.locator("ul.skipped > li")
    expect(lines.locator("summary")).to_have_text(["duplicate: 1", "not an image: 1"])
    entries = lines.locator("details li")
    expect(entries).to_have_count(2)
    expect(entries.first).to_be_hidden()
    lines.first.locator("summary").click()
    expect(entries.first).to_be_visible()
    expect(entries.first).to_have_text(
        re.compile(r"copy/red\.png: the same picture as 'red\.png' \(tile [0-9a-f]{64}\)"))
    expect(entries.nth(1)).to_be_hidden()
    lines.nth(1).locator("summary").click()
    expect(entries.nth(1)).to_have_text(re.compile(r"readme\.txt: only JPEG, .* are read"))


def add_tiles_with_javascript(page: Page, base: str, zip_path: str) -> None:
    """Add the ZIP through the gallery page and check every step it shows."""
    page.goto(base + "mosaic/tiles")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#tile-count")).to_have_text("0 tiles in the library.")
    expect(page.locator("#tiles li.tile")).to_have_count(0)
    expect(page.locator("#tiles-job")).to_be_hidden()

    page.set_input_files("#tiles-upload input[name=zip]", zip_path)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#tiles-upload button[type=submit]")
    post = posted.value
    assert post.url == base + "mosaic/tiles" and post.status == 202
    assert post.request.headers["prefer"] == "respond-async"
    assert post.request.headers["content-type"].startswith("multipart/form-data")
    job_url = post.json()["url"]
    assert re.fullmatch(r"/mosaic/jobs/[0-9a-f]{32}", job_url)

    # the report, then the refreshed gallery, all without a reload
    check_report(page.locator("#tiles-job .report"))
    expect(page.locator("#tile-count")).to_have_text("6 tiles in the library.")
    expect(page.locator("#tiles li.tile")).to_have_count(6)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#tiles-error")).to_be_hidden()
    expect(page.locator("#tiles-upload button[type=submit]")).to_be_enabled()
    assert page.locator("#tiles-upload input[name=zip]").evaluate("i => i.files.length") == 0

    # what the panel showed on the way: the upload bar filled, then the ingest bar
    log = page.evaluate("window.panelLog")
    uploads = [e["upload"] for e in log]
    assert uploads[0]["label"] == "Uploading…" and uploads[0]["value"] == 0, log
    uploading = r"Uploading: \d+% \([\d.]+ (bytes|KiB|MiB) of [\d.]+ (bytes|KiB|MiB)\)"
    assert any(re.fullmatch(uploading, u["label"]) for u in uploads), log
    assert uploads[-1]["label"] == "Uploaded." and uploads[-1]["value"] == uploads[-1]["max"] > 0
    works = [e["work"] for e in log if not e["work"]["hidden"]]
    assert works, log
    first_upload_done = next(i for i, e in enumerate(log) if e["upload"]["label"] == "Uploaded.")
    assert all(e["work"]["hidden"] for e in log[:first_upload_done]), "ingest before upload"
    assert re.fullmatch(r"Adding tiles: done \(8 / 8\)\.", works[-1]["label"]), works
    assert works[-1]["value"] == works[-1]["max"] and "done" in works[-1]["cls"]
    assert log[-1]["state"] == "done"


def test_tiles_upload_gallery_and_delete_with_javascript(server, browser, tmp_path):
    base = server.url
    page, watch = new_page(browser)
    page.context.add_init_script(PANEL_RECORDER)
    add_tiles_with_javascript(page, base, tiles_zip(tmp_path / "tiles.zip"))

    # the gallery: one loaded square thumbnail per tile, named after its entry
    images = page.locator("#tiles li.tile img")
    expect(images).to_have_count(6)
    assert sorted(images.evaluate_all("imgs => imgs.map(i => i.alt)")) == sorted(
        f"{name}.png" for name in COLOURS)
    page.wait_for_function("[...document.querySelectorAll('#tiles img')].every(i => i.complete)")
    sizes = images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert all(w == h and w > 0 for w, h in sizes), sizes
    stored = library(base)
    assert stored["count"] == 6
    assert {t["id"] for t in stored["tiles"]} == set(
        page.locator("#tiles li.tile").evaluate_all("lis => lis.map(l => l.dataset.id)"))

    # delete one: a DELETE request, the tile leaves the gallery, the count drops
    white = page.locator("#tiles li.tile", has=page.locator('img[alt="white.png"]'))
    white_id = white.get_attribute("data-id")
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        white.get_by_role("button", name="Delete white.png").click()
    assert deleted.value.status == 204
    assert deleted.value.url == base + f"mosaic/tiles/{white_id}"
    expect(page.locator(f'#tiles li.tile[data-id="{white_id}"]')).to_have_count(0)
    expect(page.locator("#tiles li.tile")).to_have_count(5)
    expect(page.locator("#tile-count")).to_have_text("5 tiles in the library.")
    assert page.evaluate("window.notReloaded") is True
    assert library(base)["count"] == 5
    assert status_of(base + f"mosaic/tiles/{white_id}/image") == 404

    # the count and gallery are the server's after a reload too
    page.reload()
    expect(page.locator("#tile-count")).to_have_text("5 tiles in the library.")
    expect(page.locator("#tiles li.tile")).to_have_count(5)
    page.screenshot(path=str(tmp_path / "tiles.png"), full_page=True)

    # a form with nothing chosen: the server's 400 message shows, the gallery stays
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#tiles-upload button[type=submit]")
    assert posted.value.status == 400
    expect(page.locator("#tiles-error")).to_have_text(re.compile(r"^No upload in the form"))
    expect(page.locator("#tiles-job")).to_have_attribute("data-state", "failed")
    expect(page.locator("#tiles-job .work-step")).to_be_hidden()
    expect(page.locator("#tiles li.tile")).to_have_count(5)
    # the refused POST is logged as a failed load: expected
    watch.check(base, expected_failures=((400, "mosaic/tiles"),))
    page.context.close()


def test_mosaic_from_an_upload_with_javascript(server, browser, tmp_path):
    base = server.url
    page, watch = new_page(browser)
    page.context.add_init_script(PANEL_RECORDER)
    add_tiles_with_javascript(page, base, tiles_zip(tmp_path / "tiles.zip"))

    page.goto(base + "mosaic")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#library-count")).to_have_text("6 tiles in the library (add tiles).")
    expect(page.locator("#result")).to_have_count(0)
    source = tmp_path / "red-blue.png"
    source.write_bytes(halves(COLOURS["red"], COLOURS["blue"]))  # 120 x 80
    page.set_input_files("#mosaic-form input[name=image]", str(source))
    page.fill("#mosaic-form input[name=cols]", "30")
    page.fill("#mosaic-form input[name=tile]", "8")
    page.select_option("#mosaic-form select[name=format]", "png")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#mosaic-form button[type=submit]")
    post = posted.value
    assert post.url == base + "mosaic" and post.status == 202
    assert post.request.headers["prefer"] == "respond-async"
    assert post.request.headers["accept"] == "application/json"

    # the result shows in place: a 30 x 20 mosaic of 8 px tiles
    result = page.locator("#result")
    expect(result.locator("h2")).to_have_text("Result")
    expect(result.locator(".details")).to_have_text(
        re.compile(r"30 × 20 cells, 2 different tiles, [\d.]+ s"))
    link = result.locator("a.open")
    expect(link).to_have_text(re.compile(r"mosaics/red-blue-30x20-\d{8}-\d{6}-[0-9a-f]{4}\.png"))
    name = link.text_content()
    assert link.get_attribute("href") == "/files/" + quote(name)
    download = result.locator("a.download").get_attribute("href")
    assert download == "/files/" + quote(name) + "?download"
    image = result.locator("img.mosaic")
    page.wait_for_function("document.querySelector('#result img.mosaic').complete")
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [30 * 8, 20 * 8]
    left, right = image.evaluate(PIXELS, [[4, 4], [235, 155]])
    assert near(left, COLOURS["red"]) and near(right, COLOURS["blue"]), (left, right)
    assert page.evaluate("window.notReloaded") is True
    assert unquote(page.url) == base + "mosaic?result=" + name  # a link to come back to
    assert status_of(base + "files/" + quote(name)) == 200
    expect(page.locator("#mosaic-error")).to_be_hidden()

    # the progress it showed: the upload, then the job's stages up to 600 / 600 cells
    log = page.evaluate("window.panelLog")
    log = log[next(i for i, e in enumerate(log) if e["upload"]["label"] == "Uploading…"):]
    assert any(e["upload"]["label"].startswith("Uploading: ") for e in log), log
    works = [e for e in log if not e["work"]["hidden"]]
    assert works and works[0]["state"] in ("queued", "running"), works
    assert all(e["upload"]["label"] == "Uploaded." for e in works)
    labels = [e["work"]["label"] for e in works]
    pattern = (r"Waiting for a free worker…|Working…|Matching 600 cells to tiles…"
               r"|Rendering: \d+ / 600 \(\d+%\)")
    assert all(re.fullmatch(pattern, label) for label in labels[:-1]), labels
    assert labels[-1] == "Making the mosaic: done (600 / 600).", labels
    assert works[-1]["state"] == "done" and works[-1]["work"]["value"] == works[-1]["work"]["max"]

    # reloading the page shows the same result from the server
    page.reload()
    expect(page.locator("#result a.open")).to_have_text(name)
    page.wait_for_function("document.querySelector('#result img.mosaic').complete")
    assert page.locator("#result img.mosaic").evaluate("i => i.naturalWidth") == 240
    page.screenshot(path=str(tmp_path / "mosaic.png"), full_page=True)
    watch.check(base)
    page.context.close()


def test_errors_show_on_the_mosaic_page(server, browser, tmp_path):
    base = server.url
    page, watch = new_page(browser)
    page.context.add_init_script(PANEL_RECORDER)
    add_tiles_with_javascript(page, base, tiles_zip(tmp_path / "tiles.zip"))
    page.goto(base + "mosaic")
    error = page.locator("#mosaic-error")
    expect(error).to_be_hidden()

    # not an image: accepted (202), then the job fails and says why
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"this is not a picture at all\n" * 50)
    page.set_input_files("#mosaic-form input[name=image]", str(fake))
    page.fill("#mosaic-form input[name=cols]", "10")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#mosaic-form button[type=submit]")
    assert posted.value.status == 202
    expect(error).to_be_visible()
    expect(error).to_have_text(re.compile(r"^holiday\.jpg: not an image"))
    expect(page.locator("#mosaic-job")).to_have_attribute("data-state", "failed")
    expect(page.locator("#result")).to_have_count(0)
    expect(page.locator("#mosaic-form button[type=submit]")).to_be_enabled()

    # no source at all: the POST itself is refused (400) with a JSON message
    page.set_input_files("#mosaic-form input[name=image]", [])
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#mosaic-form button[type=submit]")
    assert posted.value.status == 400
    expect(error).to_have_text(re.compile(r"^No source image: upload one"))
    expect(page.locator("#mosaic-job .work-step")).to_be_hidden()
    expect(page.locator("#result")).to_have_count(0)
    assert library(base)["count"] == 6  # the tiles are untouched, and no mosaic was stored
    listing = subprocess.run(["curl", "-sS", "--fail", base + "files/?format=json&prefix=mosaics/"],
                             capture_output=True, text=True, timeout=30)
    assert json.loads(listing.stdout)["files"] == []
    # the refused POST is logged as a failed load: expected
    watch.check(base, expected_failures=((400, "mosaic"),))
    page.context.close()


def test_tiles_and_mosaic_without_javascript(server, browser, tmp_path):
    base = server.url
    put(base + "files/photos/sky.png", halves(COLOURS["blue"], COLOURS["white"], (90, 60)))
    put(base + "files/notes.txt", b"not offered as a source\n")
    page, watch = new_page(browser, java_script_enabled=False)

    # tiles: the form posts the ZIP, the server answers 303 to the job's page,
    # which refreshes itself until the report shows; it links back to the gallery
    page.goto(base + "mosaic/tiles")
    page.set_input_files("#tiles-upload input[name=zip]", tiles_zip(tmp_path / "tiles.zip"))
    with page.expect_navigation() as nav:
        page.click("#tiles-upload button[type=submit]")
    post = nav.value.request.redirected_from
    assert post is not None and post.method == "POST" and post.response().status == 303
    assert re.fullmatch(re.escape(base) + r"mosaic/jobs/[0-9a-f]{32}", page.url), page.url
    expect(page.locator("h1")).to_have_text("Adding tiles: done", timeout=60_000)
    check_report(page.locator("#job .report"))
    page.get_by_role("link", name="See the library").click()
    page.wait_for_url(base + "mosaic/tiles")
    expect(page.locator("#tile-count")).to_have_text("6 tiles in the library.")
    expect(page.locator("#tiles li.tile")).to_have_count(6)
    expect(page.locator("#tiles-job")).to_be_hidden()

    # the delete button is a plain form too
    green = page.locator("#tiles li.tile", has=page.locator('img[alt="green.png"]'))
    green_id = green.get_attribute("data-id")
    with page.expect_navigation() as nav:
        green.get_by_role("button", name="Delete green.png").click()
    assert nav.value.request.redirected_from.response().status == 303
    assert page.url == base + "mosaic/tiles"
    expect(page.locator("#tile-count")).to_have_text("5 tiles in the library.")
    expect(page.locator(f'#tiles li.tile[data-id="{green_id}"]')).to_have_count(0)
    assert library(base)["count"] == 5

    # a mosaic from a stored image: 303 to the page showing the result
    page.goto(base + "mosaic")
    options = page.locator("#mosaic-form select[name=source] option")
    expect(options).to_have_text(["(choose a stored image)", "photos/sky.png"])
    page.select_option("#mosaic-form select[name=source]", "photos/sky.png")
    page.fill("#mosaic-form input[name=cols]", "12")
    page.fill("#mosaic-form input[name=tile]", "10")
    with page.expect_navigation() as nav:
        page.click("#mosaic-form button[type=submit]")
    post = nav.value.request.redirected_from
    assert post is not None and post.method == "POST" and post.url == base + "mosaic"
    assert post.response().status == 303
    assert nav.value.status == 200
    name = unquote(page.url.split("?result=", 1)[1])
    assert re.fullmatch(r"mosaics/sky-12x8-\d{8}-\d{6}-[0-9a-f]{4}\.jpg", name), page.url
    result = page.locator("#result")
    expect(result.locator("a.open")).to_have_text(name)
    expect(result.locator(".details")).to_contain_text("from photos/sky.png")
    image = result.locator("img.mosaic")
    assert image.get_attribute("src") == "/files/" + quote(name)
    # the image the page shows (fetched out of band) is 12 x 8 tiles of 10 px
    proc = subprocess.run(["curl", "-sS", "--fail", base + "files/" + quote(name)],
                          capture_output=True, timeout=30)
    assert Image.open(io.BytesIO(proc.stdout)).size == (120, 80)
    expect(image).to_be_visible()
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [120, 80]
    # the source stays chosen, ready for another try; the output is offered too
    expect(page.locator("#mosaic-form select[name=source]")).to_have_value("photos/sky.png")
    earlier = page.locator("#mosaic-form optgroup[label='Earlier mosaics'] option")
    expect(earlier).to_have_text([name])
    watch.check(base)
    page.context.close()


def gradient_png() -> bytes:
    """Every cell a different colour: matching takes a while, so the job is seen running."""
    ramp = Image.linear_gradient("L")
    out = io.BytesIO()
    Image.merge("RGB", [ramp, ramp.rotate(90), Image.new("L", ramp.size, 90)]).save(out, "PNG")
    return out.getvalue()


def test_job_page_and_no_other_hosts(server, browser, tmp_path):
    base = server.url
    put(base + "files/photos/gradient.png", gradient_png())  # 256 x 256
    subprocess.run(["curl", "-sS", "--fail", "-F", "zip=@" + tiles_zip(tmp_path / "tiles.zip"),
                    base + "mosaic/tiles"], check=True, capture_output=True, timeout=60)
    proc = subprocess.run(["curl", "-sS", "--fail", "-H", "Prefer: respond-async",
                           "-F", "source=photos/gradient.png", "-F", "cols=30", "-F", "tile=6",
                           base + "mosaic"], capture_output=True, timeout=60, text=True)
    job = json.loads(proc.stdout)
    page, watch = new_page(browser)
    page.context.add_init_script(
        "sessionStorage.setItem('loads', 1 + +sessionStorage.getItem('loads'))")

    # the job's page refreshes itself while the job runs, and ends with the result
    page.goto(base + job["url"].lstrip("/"))
    if page.locator("#job").get_attribute("data-state") in ("queued", "running"):
        expect(page).to_have_title(re.compile(r"making a mosaic: (queued|running) · fileserver"))
        expect(page.locator("head meta[http-equiv=refresh]")).to_have_attribute("content", "1")
        expect(page.locator("#job .work-step progress")).to_have_count(1)
        expect(page.locator("#job .work-step .label")).to_have_text(re.compile(
            r"Waiting for a free worker…|Working…|Matching 900 cells to tiles…"
            r"|Rendering: \d+ / 900 \(\d+%\)"))
        expect(page.locator("#job .hint")).to_have_text("This page refreshes every second.")
        refreshes = True
    else:  # a very fast server: the job ended before the page was asked for
        refreshes = False
    expect(page.locator("h1")).to_have_text("Making a mosaic: done", timeout=90_000)
    assert not refreshes or page.evaluate("+sessionStorage.getItem('loads')") > 1
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
    expect(page.locator("#job .details")).to_have_text(
        re.compile(r"30 × 30 cells, \d+ different tiles?, [\d.]+ s"))
    page.wait_for_function("document.querySelector('#job img.mosaic').complete")
    size = page.locator("#job img.mosaic").evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert size == [180, 180]
    name = page.locator("#job a.open").text_content()
    assert name.startswith("mosaics/gradient-30x30-") and name.endswith(".jpg")
    page.get_by_role("link", name="Make another").click()
    expect(page.locator("#result a.open")).to_have_text(name)
    expect(page.locator("#mosaic-form select[name=source]")).to_have_value("photos/gradient.png")

    # the header links to both mosaic pages
    nav = page.locator("header nav.site a")
    expect(nav).to_have_text(["make a mosaic", "mosaic tiles"])
    nav.nth(1).click()
    page.wait_for_url(base + "mosaic/tiles")
    expect(page.locator("header nav.site a[aria-current=page]")).to_have_text("mosaic tiles")
    for path in ("files/", "mosaic/jobs/" + "0" * 32):
        page.goto(base + path)
    expect(page.locator("h1")).to_have_text("404 Not Found")

    # everything came from this server: its stylesheet, the script, the images
    assert base + "static/style.css" in watch.urls
    assert base + "static/mosaic.js" in watch.urls
    assert base + "files/" + quote(name) in watch.urls
    watch.check(base, expected_failures=((404, "mosaic/jobs/" + "0" * 32),))
    page.context.close()
