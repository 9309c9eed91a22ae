"""The pages in a real headless Chromium (Debian's /usr/bin/chromium) via Playwright.

These tests fail, not skip, when Chromium or Playwright is missing: the
pages are part of the product and must be exercised. Never run
`playwright install` for them; they use the system Chromium.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import start_server
from fileserver.store import format_size

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

# Records what the listing's upload script does, across its final reload:
# each <li> added to #progress, whether it holds a <progress>, and its last
# class ("uploading" -> "done"/"failed") and label.
PROGRESS_RECORDER = """
(() => {
  const log = (entry) => {
    const all = JSON.parse(sessionStorage.getItem("progressLog") || "[]");
    all.push(entry);
    sessionStorage.setItem("progressLog", JSON.stringify(all));
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const li = m.type === "attributes" ? m.target : null;
      const added = m.type === "childList" ? [...m.addedNodes] : [];
      for (const node of (li ? [li] : added)) {
        if (node.nodeType !== 1 || node.tagName !== "LI" || !node.closest("#progress")) continue;
        const bar = node.querySelector("progress");
        log({name: node.dataset.name, cls: node.className, hasBar: !!bar,
             value: bar ? bar.value : null, max: bar ? bar.max : null,
             text: node.textContent});
      }
    }
  }).observe(document, {childList: true, subtree: true, attributes: true,
                        attributeFilter: ["class"]});
})();
"""


def mark_page(page: Page) -> None:
    """Set a flag in the page's window: a reload or navigation loses it."""
    page.evaluate("window.__unchanged = true")


def page_is_marked(page: Page) -> bool:
    return page.evaluate("window.__unchanged === true")


class PageWatch:
    """Every request URL and every script error or console error of a page."""

    def __init__(self, page: Page):
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.failed: list[tuple[int, str]] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("response", lambda r: r.status >= 400 and self.failed.append((r.status, r.url)))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"console: {m.text} ({m.location.get('url')})"))

    def check(self, base: str, expected_failures: tuple[tuple[int, str], ...] = ()) -> None:
        """No request left ``base``'s host; no script errors; no failed loads
        but ``expected_failures`` ((status, path) pairs)."""
        host = urlsplit(base).netloc
        foreign = [u for u in self.urls if urlsplit(u).netloc != host]
        assert not foreign, f"the page loaded from other hosts: {foreign}"
        assert self.urls, "no requests were recorded"
        allowed = {(s, base + p) for s, p in expected_failures}
        failed_load = re.compile(r"console: Failed to load resource: the server responded "
                                 r"with a status of (\d+) \(.*\) \((.*)\)")

        def expected(error: str) -> bool:
            match = failed_load.fullmatch(error)
            return bool(match) and (int(match[1]), match[2]) in allowed

        errors = [e for e in self.errors if not expected(e)]
        assert not errors, (errors, self.failed)


def new_page(browser: Browser, **context_options) -> tuple[Page, PageWatch]:
    context = browser.new_context(**context_options)
    context.set_default_timeout(20_000)
    page = context.new_page()
    return page, PageWatch(page)


def put(url: str, data: bytes) -> None:
    """Store a file out of band, with curl (the browser is what is under test)."""
    proc = subprocess.run(["curl", "-sS", "--fail-with-body", "-T", "-", url], input=data,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def status_of(url: str) -> int:
    proc = subprocess.run(["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", url],
                          capture_output=True, timeout=30, text=True)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def file_row(page: Page, name: str):
    return page.locator(f'#files tr.file[data-name="{name}"]')


def expect_size(page: Page, name: str, size: int) -> None:
    cell = file_row(page, name).locator("td.size")
    expect(cell).to_have_text(format_size(size))
    expect(cell).to_have_attribute("title", f"{size} bytes")


def test_upload_list_download_folders_delete(live_server, browser, tmp_path):
    base = live_server.url
    page, watch = new_page(browser)
    page.context.add_init_script(PROGRESS_RECORDER)

    # / redirects to the listing, empty at first
    page.goto(base)
    assert page.url == base + "files/"
    expect(page).to_have_title("/ · fileserver")
    expect(page.locator("p.empty")).to_have_text("No files here yet.")

    # upload through the form: JavaScript PUTs the file with a progress bar, then
    # fetches the table again without reloading the page
    mark_page(page)
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "photo one.bin"
    src.write_bytes(data)
    page.set_input_files("#upload input[name=file]", str(src))
    with page.expect_request(lambda r: r.method == "PUT") as put_request:
        page.click("#upload button[type=submit]")
    assert put_request.value.url == base + "files/photo%20one.bin"
    expect(file_row(page, "photo one.bin")).to_be_visible()
    expect_size(page, "photo one.bin", len(data))
    expect(file_row(page, "photo one.bin").locator("a.open")).to_have_text("photo one.bin")
    log = page.evaluate("JSON.parse(sessionStorage.getItem('progressLog') || '[]')")
    assert log, "no per-file progress item appeared"
    assert all(e["name"] == "photo one.bin" and e["hasBar"] for e in log), log
    assert log[0]["cls"] == "uploading"
    assert log[-1]["cls"] == "done" and log[-1]["value"] == 100, log
    expect(page.locator("#progress li.done")).to_have_count(1)  # still shown: no reload
    assert page_is_marked(page)

    # the Download link saves exactly the uploaded bytes
    with page.expect_download() as download_info:
        file_row(page, "photo one.bin").locator("a.download").click()
    download = download_info.value
    assert download.suggested_filename == "photo one.bin"
    saved = tmp_path / "downloaded.bin"
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(data).digest()

    # folders: a file stored under docs/inner/ shows a folder row
    put(base + "files/docs/inner/readme.txt", b"read me\n")
    page.reload()
    folder = page.locator("#files tr.folder a")
    expect(folder).to_have_text(["docs/"])
    folder.click()
    page.wait_for_url(base + "files/docs/")
    expect(page.locator("nav.crumbs")).to_have_text("files / docs")
    expect(page.locator("#upload .hint")).to_have_text("into /docs/")
    page.locator("#files tr.folder a", has_text="inner/").click()
    page.wait_for_url(base + "files/docs/inner/")
    expect(page.locator("nav.crumbs")).to_have_text("files / docs / inner")
    expect(page.locator("nav.crumbs a")).to_have_text(["files", "docs"])  # not the folder itself
    expect(file_row(page, "docs/inner/readme.txt").locator("a.open")).to_have_text("readme.txt")
    expect_size(page, "docs/inner/readme.txt", 8)

    # upload into this folder through the page
    note = tmp_path / "note.txt"
    note.write_bytes(b"a note in a folder\n")
    page.set_input_files("#upload input[name=file]", str(note))
    page.click("#upload button[type=submit]")
    expect(file_row(page, "docs/inner/note.txt")).to_be_visible()
    expect_size(page, "docs/inner/note.txt", note.stat().st_size)

    # the breadcrumb leads back up
    page.locator("nav.crumbs a", has_text="docs").click()
    page.wait_for_url(base + "files/docs/")
    page.locator("nav.crumbs a", has_text="files").click()
    page.wait_for_url(base + "files/")
    expect(file_row(page, "photo one.bin")).to_be_visible()

    page.screenshot(path=str(tmp_path / "listing.png"), full_page=True)

    # Delete asks, then removes the file and its row
    page.once("dialog", lambda dialog: dialog.accept())
    file_row(page, "photo one.bin").get_by_role("button", name="Delete").click()
    expect(file_row(page, "photo one.bin")).to_have_count(0)
    expect(page.locator("#files tr.folder a")).to_have_text(["docs/"])
    assert status_of(base + "files/photo%20one.bin") == 404
    assert status_of(base + "files/docs/inner/note.txt") == 200

    watch.check(base)
    page.context.close()


def test_upload_and_delete_without_javascript(live_server, browser, tmp_path):
    base = live_server.url
    page, watch = new_page(browser, java_script_enabled=False)
    page.goto(base + "files/")

    first, second = tmp_path / "first.txt", tmp_path / "second.bin"
    first.write_bytes(b"plain form upload\n")
    second.write_bytes(os.urandom(200_000))
    page.set_input_files("#upload input[name=file]", [str(first), str(second)])
    with page.expect_navigation() as nav:
        page.click("#upload button[type=submit]")
    response = nav.value
    # the multipart POST answered 303 See Other back to the listing
    post = response.request.redirected_from
    assert post is not None and post.method == "POST"
    assert post.url == base + "files/"
    assert post.response().status == 303
    assert (post.headers.get("content-type") or "").startswith("multipart/form-data")
    assert response.status == 200 and page.url == base + "files/"
    expect_size(page, "first.txt", first.stat().st_size)
    expect_size(page, "second.bin", second.stat().st_size)

    # into a folder, still without JavaScript
    put(base + "files/sub/existing.txt", b"x")
    page.goto(base + "files/sub/")
    page.set_input_files("#upload input[name=file]", str(first))
    with page.expect_navigation():
        page.click("#upload button[type=submit]")
    assert page.url == base + "files/sub/"
    expect_size(page, "sub/first.txt", first.stat().st_size)

    # the Delete button is a plain form too: it leads to a page that asks first
    with page.expect_navigation():
        file_row(page, "sub/first.txt").get_by_role("button", name="Delete").click()
    assert page.url == base + "files/sub/first.txt?delete="
    expect(page.locator("h1")).to_have_text("Delete sub/first.txt?")
    with page.expect_navigation():  # Cancel goes back, nothing deleted
        page.get_by_role("link", name="Cancel").click()
    assert page.url == base + "files/sub/"
    assert status_of(base + "files/sub/first.txt") == 200
    with page.expect_navigation():
        file_row(page, "sub/first.txt").get_by_role("button", name="Delete").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Delete").click()
    assert page.url == base + "files/sub/"
    expect(file_row(page, "sub/first.txt")).to_have_count(0)
    expect(file_row(page, "sub/existing.txt")).to_be_visible()
    assert status_of(base + "files/sub/first.txt") == 404
    assert status_of(base + "files/first.txt") == 200

    watch.check(base)
    page.context.close()


def test_pages_load_nothing_from_other_hosts(live_server, browser):
    base = live_server.url
    put(base + "files/a/b.txt", b"b")
    put(base + "files/c.txt", b"c")
    page, watch = new_page(browser)
    for path in ("", "files/", "files/a/", "files/?prefix=c", "files/missing.txt"):
        page.goto(base + path)
    # the stylesheet and the upload script come from this server
    assert base + "static/style.css" in watch.urls
    assert base + "static/upload.js" in watch.urls
    assert page.locator("h1").text_content() == "404 Not Found"
    # the 404 document itself is logged as a failed load: expected
    watch.check(base, expected_failures=((404, "files/missing.txt"),))
    page.context.close()


@pytest.fixture
def limited_server(backend, tmp_path):
    """A live server that refuses uploads over 1 MiB."""
    server = start_server(tmp_path / "limited", backend.config(tmp_path / "limited"),
                          "--max-upload-size", "1M")
    yield server
    server.stop()


def test_upload_over_the_limit_shows_the_error(limited_server, browser, tmp_path):
    base = limited_server.url
    page, watch = new_page(browser)
    page.goto(base + "files/")
    big = tmp_path / "too-big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024))
    page.set_input_files("#upload input[name=file]", str(big))
    page.click("#upload button[type=submit]")
    item = page.locator("#progress li.failed")
    expect(item).to_contain_text("too-big.bin")
    expect(item).to_contain_text("larger than the limit of 1.0 MiB")
    expect(item.locator("progress")).to_have_count(1)
    # no reload on failure, and nothing stored
    expect(page.locator("p.empty")).to_be_visible()
    assert status_of(base + "files/too-big.bin") == 404
    # the refused PUT is logged as a failed load: expected
    watch.check(base, expected_failures=((413, "files/too-big.bin"),))


def _form_upload_without_javascript(server, browser, path: Path):
    page, watch = new_page(browser, java_script_enabled=False)
    page.goto(server.url + "files/")
    page.set_input_files("#upload input[name=file]", str(path))
    with page.expect_navigation() as nav:
        page.click("#upload button[type=submit]")
    return page, nav.value


def test_form_upload_just_over_the_limit_without_javascript(limited_server, browser, tmp_path):
    # over max_upload_size but within waitress's multipart slack: the app refuses
    src = tmp_path / "just-over.bin"
    src.write_bytes(b"\x00" * (1024 * 1024 + 100))
    page, response = _form_upload_without_javascript(limited_server, browser, src)
    assert response.status == 413
    assert response.headers["content-type"].startswith("text/html")
    expect(page.locator("h1")).to_contain_text("413")
    expect(page.locator(".error-message")).to_contain_text("larger than the limit of 1.0 MiB")
    assert status_of(limited_server.url + "files/just-over.bin") == 404


def test_form_upload_far_over_the_limit_without_javascript(limited_server, browser, tmp_path):
    src = tmp_path / "far-over.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024))
    page, response = _form_upload_without_javascript(limited_server, browser, src)
    assert response.status == 413
    assert status_of(limited_server.url + "files/far-over.bin") == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.locator("h1")).to_contain_text("413", timeout=2000)


def test_cross_site_form_posts_are_refused(live_server, browser, tmp_path):
    """A page of another origin (localhost vs 127.0.0.1) cannot make the browser
    upload or delete: the server checks Origin against Host (403)."""
    base = live_server.url
    put(base + "files/victim.txt", b"keep me\n")
    foreign = base.replace("127.0.0.1", "localhost")
    assert foreign != base
    page, _ = new_page(browser)
    page.goto(foreign + "files/")

    # a forged delete: the listing's own no-JavaScript delete form, aimed at the other origin
    page.evaluate("""(target) => {
        const form = document.createElement("form");
        form.method = "post"; form.action = target; form.id = "forged-delete";
        form.innerHTML = '<input type="hidden" name="_method" value="DELETE">';
        document.body.appendChild(form);
    }""", base + "files/victim.txt")
    with page.expect_navigation() as nav:
        page.evaluate("document.getElementById('forged-delete').submit()")
    assert nav.value.status == 403
    assert nav.value.request.headers.get("origin") == foreign.rstrip("/")
    assert status_of(base + "files/victim.txt") == 200

    # a forged multipart upload
    page.goto(foreign + "files/")
    page.evaluate("""(target) => {
        const form = document.createElement("form");
        form.method = "post"; form.action = target; form.enctype = "multipart/form-data";
        form.id = "forged-upload";
        form.innerHTML = '<input type="file" name="file">';
        document.body.appendChild(form);
    }""", base + "files/")
    src = tmp_path / "planted.txt"
    src.write_bytes(b"planted\n")
    page.set_input_files("#forged-upload input[type=file]", str(src))
    with page.expect_navigation() as nav:
        page.evaluate("document.getElementById('forged-upload').submit()")
    assert nav.value.status == 403
    assert status_of(base + "files/planted.txt") == 404
    page.context.close()


def test_login_upload_with_csrf_delete_logout(backend, browser, tmp_path):
    """With accounts: the login page, a session, the JavaScript upload and the
    no-JavaScript delete (both carry the CSRF token), another user's file
    refused, the account page's token, and logout."""
    server = start_server(tmp_path / "srv", backend.config(tmp_path / "srv"))
    config = server.workdir / "fileserver.ini"
    for name, role in (("erin", "writer"), ("frank", "writer")):
        added = subprocess.run([sys.executable, "-m", "fileserver", "user", "--config", str(config),
                                "add", name, "--role", role, "--password-stdin"],
                               input=f"{name}-password\n", capture_output=True, text=True,
                               timeout=60)
        assert added.returncode == 0, added.stderr
    base = server.url
    try:
        curl = subprocess.run(["curl", "-sS", "-u", "frank:frank-password", "-T", "-",
                               base + "files/franks.txt"], input=b"frank's",
                              capture_output=True, timeout=30)
        assert curl.returncode == 0 and b'"owner": "frank"' in curl.stdout, curl
        page, watch = new_page(browser)
        page.goto(base + "files/")
        page.wait_for_url(base + "login?next=/files/")  # not logged in: the login form
        page.fill("input[name=name]", "erin")
        page.fill("input[name=password]", "wrong-password")
        page.click("form.login button[type=submit]")
        expect(page.locator(".error-message")).to_have_text("Wrong user name or password.")
        page.fill("input[name=password]", "erin-password")
        page.click("form.login button[type=submit]")
        page.wait_for_url(base + "files/")
        expect(page.locator("header .account a")).to_have_text("erin")
        cookie = [c for c in page.context.cookies() if c["name"] == "fileserver_session"][0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

        src = tmp_path / "erins.txt"
        src.write_bytes(b"erin's file\n")
        page.set_input_files("#upload input[name=file]", str(src))
        with page.expect_request(lambda r: r.method == "PUT") as put_request:
            page.click("#upload button[type=submit]")
        assert put_request.value.headers.get("x-csrf-token")
        expect(file_row(page, "erins.txt")).to_be_visible()

        # frank's file: erin's delete is refused, and the page says why
        page.on("dialog", lambda dialog: dialog.accept())
        file_row(page, "franks.txt").locator("form.delete button").click()
        expect(page.locator(".error-message")).to_contain_text("belongs to frank")
        expect(file_row(page, "franks.txt")).to_have_count(1)
        with page.expect_request(lambda r: r.method == "DELETE") as delete_request:
            file_row(page, "erins.txt").locator("form.delete button").click()
        assert delete_request.value.headers.get("x-csrf-token")
        expect(file_row(page, "erins.txt")).to_have_count(0)
        expect(page.locator(".error-message")).to_have_count(0)
        expect(file_row(page, "franks.txt")).to_have_count(1)

        page.goto(base + "account")
        page.fill("form.token input[name=label]", "laptop")
        page.click("form.token button[type=submit]")
        token = page.locator("#new-token").inner_text()
        check = subprocess.run(["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", "-H",
                                f"Authorization: Bearer {token}", base + "files/franks.txt"],
                               capture_output=True, text=True, timeout=30)
        assert check.stdout == "200"

        page.click("header .account button")  # log out
        page.wait_for_url(base + "login")
        page.goto(base + "files/")
        page.wait_for_url(re.compile(r".*/login\?next=/files/$"))
        watch.check(base, expected_failures=((403, "files/franks.txt"),
                                             (401, "login")))
    finally:
        server.stop()


# -- asking before a delete or a replace; phones --------------------------------------


def test_javascript_delete_asks_first_then_removes_the_row(live_server, browser):
    base = live_server.url
    put(base + "files/a.txt", b"a")
    put(base + "files/b.txt", b"b")
    page, watch = new_page(browser)
    deletes = []
    page.on("request", lambda r: r.method == "DELETE" and deletes.append(r.url))
    page.goto(base + "files/")
    mark_page(page)

    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    file_row(page, "a.txt").get_by_role("button", name="Delete").click()
    assert asked == ["Delete a.txt?"]
    expect(file_row(page, "a.txt")).to_have_count(1)
    assert deletes == [] and status_of(base + "files/a.txt") == 200

    page.once("dialog", lambda d: d.accept())
    file_row(page, "a.txt").get_by_role("button", name="Delete").click()
    expect(file_row(page, "a.txt")).to_have_count(0)
    assert deletes == [base + "files/a.txt"]
    assert status_of(base + "files/a.txt") == 404
    expect(file_row(page, "b.txt")).to_have_count(1)

    # the last one: the table gives way to the empty-folder text
    page.once("dialog", lambda d: d.accept())
    file_row(page, "b.txt").get_by_role("button", name="Delete").click()
    expect(page.locator("p.empty")).to_have_text("No files here yet.")
    assert status_of(base + "files/b.txt") == 404
    assert page_is_marked(page), "the page was reloaded"
    watch.check(base)
    page.context.close()


def progress_values(page: Page) -> list[list]:
    """[name, class, bar value] of each item of the progress list."""
    return page.eval_on_selector_all(
        "#progress li", "items => items.map(li => [li.dataset.name, li.className, "
                        "li.querySelector('progress').value])")


def test_javascript_upload_onto_a_taken_name(live_server, browser, tmp_path):
    base = live_server.url
    put(base + "files/photo.jpg", b"the old photo")
    page, watch = new_page(browser)
    page.goto(base + "files/")
    mark_page(page)
    expect(page.locator("#upload fieldset.exists")).to_be_hidden()  # asked per file instead

    photo, fresh = tmp_path / "photo.jpg", tmp_path / "fresh.txt"
    photo.write_bytes(b"the new photo, twice as long")
    fresh.write_bytes(b"a name nobody has\n")
    page.set_input_files("#upload input[name=file]", [str(photo), str(fresh)])
    page.click("#upload button[type=submit]")
    conflict = page.locator('#progress li.conflict[data-name="photo.jpg"]')
    expect(conflict).to_contain_text("photo.jpg exists:")
    expect(conflict.get_by_role("button")).to_have_text(["Replace", "Keep both", "Skip"])
    # the free name went ahead without asking
    expect(page.locator('#progress li.done[data-name="fresh.txt"]')).to_be_visible()
    with page.expect_request(lambda r: r.method == "PUT") as put_request:
        conflict.get_by_role("button", name="Keep both").click()
    assert put_request.value.url == base + "files/photo.jpg?exists=keep"
    done = page.locator('#progress li.done[data-name="photo.jpg"]')
    expect(done).to_contain_text("stored as photo (1).jpg")
    # the table shows both, and the progress bars are still there, full
    expect(file_row(page, "photo (1).jpg")).to_be_visible()
    expect_size(page, "photo (1).jpg", photo.stat().st_size)
    expect_size(page, "photo.jpg", len(b"the old photo"))
    expect(file_row(page, "fresh.txt")).to_be_visible()
    assert sorted(progress_values(page)) == [["fresh.txt", "done", 100],
                                             ["photo.jpg", "done", 100]]
    assert page_is_marked(page), "the page was reloaded"

    # again: replace this time; the last batch's items make way
    photo.write_bytes(b"newest")
    page.set_input_files("#upload input[name=file]", str(photo))
    page.click("#upload button[type=submit]")
    page.locator("#progress li.conflict").get_by_role("button", name="Replace").click()
    expect(page.locator("#progress li.done")).to_have_count(1)
    expect_size(page, "photo.jpg", len(b"newest"))
    # and skip: nothing sent
    page.set_input_files("#upload input[name=file]", str(fresh))
    page.click("#upload button[type=submit]")
    page.locator("#progress li.conflict").get_by_role("button", name="Skip").click()
    expect(page.locator("#progress li.skipped")).to_contain_text("fresh.txt — skipped")
    expect(page.locator("#files tr.file")).to_have_count(3)
    assert page_is_marked(page)

    fetch = subprocess.run(["curl", "-sS", base + "files/photo.jpg",
                            base + "files/photo%20(1).jpg"], capture_output=True, timeout=30)
    assert fetch.stdout == b"newest" + b"the new photo, twice as long"
    watch.check(base)
    page.context.close()


PHONE = {"viewport": {"width": 390, "height": 844}}
LONG = "quarterly-report-for-the-board-" * 5 + "final.pdf"


def assert_fits(page: Page, what: str) -> None:
    """No horizontal scroll: nothing wider than the screen."""
    page.wait_for_load_state()  # the stylesheet too, after a click's navigation
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth, "
                           "document.documentElement.clientWidth]")
    assert widths[0] <= min(widths[1:]), (what, widths)


def assert_rows_on_screen(page: Page) -> None:
    """Every file's name, Download and Delete are within the screen's width."""
    rows = page.locator("#files tr.file")
    assert rows.count() >= 4
    for i in range(rows.count()):
        for part in ("a.open", "a.download", "form.delete button"):
            box = rows.nth(i).locator(part).bounding_box()
            assert box and box["width"] > 0 and box["x"] + box["width"] <= 390, (i, part, box)


def log_in(page: Page, base: str, password: str) -> None:
    page.fill("input[name=name]", "erin")
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")


def test_pages_fit_a_phone(backend, browser, tmp_path):
    server = start_server(tmp_path / "srv", backend.config(tmp_path / "srv"))
    added = subprocess.run([sys.executable, "-m", "fileserver", "user", "--config",
                            str(server.workdir / "fileserver.ini"), "add", "erin", "--role",
                            "writer", "--password-stdin"], input="erin-password\n",
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    base = server.url
    auth = base.replace("http://", "http://erin:erin-password@")
    try:
        for name, size in ((LONG, 5_000_000), ("a.txt", 3), ("b.bin", 70_000),
                           ("c.json", 1200), ("folder-with-a-rather-long-name-too/" + LONG, 1)):
            put(auth + "files/" + name, b"x" * size)
        page, watch = new_page(browser, **PHONE)
        page.goto(base + "files/")
        page.wait_for_url(re.compile(r".*/login\?next=/files/$"))
        assert_fits(page, "login")
        log_in(page, base, "wrong-password")
        error = page.locator("p.error-message")
        expect(error).to_have_text("Wrong user name or password.")
        expect(error).to_have_attribute("role", "alert")
        style = error.evaluate("e => { const s = getComputedStyle(e); return [s.color, "
                               "s.borderLeftWidth, s.borderLeftStyle, s.backgroundColor]; }")
        red, green, blue = map(int, re.findall(r"\d+", style[0])[:3])
        assert red > 2 * max(green, blue, 1), style  # red text
        assert float(style[1].rstrip("px")) >= 2 and style[2] == "solid", style
        assert style[3] not in ("rgba(0, 0, 0, 0)", "transparent"), style
        assert_fits(page, "login with an error")
        log_in(page, base, "erin-password")
        page.wait_for_url(base + "files/")
        assert_fits(page, "listing")
        assert_rows_on_screen(page)
        expect(page.locator("#files th.type")).to_be_hidden()
        page.goto(base + "files/?sort=size&order=desc")
        assert_fits(page, "sorted listing")
        expect(page.locator("#files tr.file").first).to_have_attribute("data-name", LONG)
        page.goto(base + "files/folder-with-a-rather-long-name-too/")
        assert_fits(page, "folder")
        page.goto(base + "files/" + LONG + "?delete")
        expect(page.locator("h1")).to_have_text(f"Delete {LONG}?")
        assert_fits(page, "confirmation")
        page.goto(base + "files/missing-" + LONG)
        expect(page.locator("h1")).to_have_text("404 Not Found")
        assert_fits(page, "error")
        page.goto(base + "account")
        page.fill("form.token input[name=label]", "a phone")
        page.click("form.token button[type=submit]")
        expect(page.locator("#new-token")).to_be_visible()
        assert_fits(page, "account")
        for path in ("mosaic", "mosaic/tiles"):
            page.goto(base + path)
            assert_fits(page, path)
        watch.check(base, expected_failures=((401, "login"),
                                             (404, "files/missing-" + LONG)))
        page.context.close()

        # without JavaScript the listing shows the keep/replace choice: it fits too
        page, _ = new_page(browser, java_script_enabled=False, **PHONE)
        page.goto(base + "login")
        log_in(page, base, "erin-password")
        page.wait_for_url(base + "files/")
        expect(page.locator("#upload fieldset.exists")).to_be_visible()
        assert_fits(page, "listing without JavaScript")
        assert_rows_on_screen(page)
        page.context.close()
    finally:
        server.stop()
