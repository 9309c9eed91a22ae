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

    # upload through the form: JavaScript PUTs the file with a progress bar, then reloads
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "photo one.bin"
    src.write_bytes(data)
    page.set_input_files("#upload input[type=file]", str(src))
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
    expect(page.locator("#progress li")).to_have_count(0)  # the page reloaded

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
    expect(page.locator("nav.crumbs a")).to_have_text(["files", "docs", "inner"])
    expect(file_row(page, "docs/inner/readme.txt").locator("a.open")).to_have_text("readme.txt")
    expect_size(page, "docs/inner/readme.txt", 8)

    # upload into this folder through the page
    note = tmp_path / "note.txt"
    note.write_bytes(b"a note in a folder\n")
    page.set_input_files("#upload input[type=file]", str(note))
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

    # Delete removes the file and comes back to the listing
    file_row(page, "photo one.bin").get_by_role("button", name="Delete").click()
    page.wait_for_url(base + "files/")
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
    page.set_input_files("#upload input[type=file]", [str(first), str(second)])
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
    page.set_input_files("#upload input[type=file]", str(first))
    with page.expect_navigation():
        page.click("#upload button[type=submit]")
    assert page.url == base + "files/sub/"
    expect_size(page, "sub/first.txt", first.stat().st_size)

    # the Delete button is a plain form too
    with page.expect_navigation():
        file_row(page, "sub/first.txt").get_by_role("button", name="Delete").click()
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
    page.set_input_files("#upload input[type=file]", str(big))
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
    page.set_input_files("#upload input[type=file]", str(path))
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
        page.set_input_files("#upload input[type=file]", str(src))
        with page.expect_request(lambda r: r.method == "PUT") as put_request:
            page.click("#upload button[type=submit]")
        assert put_request.value.headers.get("x-csrf-token")
        expect(file_row(page, "erins.txt")).to_be_visible()

        # frank's file: erin's delete is refused with a page that says why
        file_row(page, "franks.txt").locator("form.delete button").click()
        expect(page.locator(".error-message")).to_contain_text("belongs to frank")
        page.goto(base + "files/")
        file_row(page, "erins.txt").locator("form.delete button").click()
        page.wait_for_url(base + "files/")
        expect(file_row(page, "erins.txt")).to_have_count(0)
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
