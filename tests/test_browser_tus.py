"""The listing page's resumable uploads (tus-js-client, served by the app) in
headless Chromium, on every backend: a file larger than one part goes in
parts through /uploads/, survives a dropped request, and after a page
reload continues where it stopped when the same file is chosen again."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

import pytest
from playwright.sync_api import expect

from conftest import start_server
from test_browser import file_row, new_page

MiB = 1024 * 1024


@pytest.fixture
def server(backend, tmp_path):
    """A live server whose page sends files over 1 MiB through tus."""
    config = backend.config(tmp_path / "srv") + "\n[plugin.tus]\nchunk_size = 1M\n"
    running = start_server(tmp_path / "srv", config)
    yield running
    running.stop()


def only_dropped_requests_failed(watch, base: str) -> None:
    """Nothing loaded from elsewhere, no script error; the console's errors
    are the requests the test dropped."""
    assert all(u.startswith(base) for u in watch.urls), watch.urls
    unexpected = [e for e in watch.errors
                  if not re.fullmatch(r"console: Failed to load resource: net::ERR_\w+ \(.*\)", e)]
    assert not unexpected, unexpected


def stored_sha256(url: str) -> str:
    proc = subprocess.run(["curl", "-sS", "--fail", url], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return hashlib.sha256(proc.stdout).hexdigest()


def test_a_large_file_goes_in_parts_and_survives_a_dropped_request(server, browser, tmp_path):
    page, watch = new_page(browser)
    data = os.urandom(5 * MiB + 17)
    src = tmp_path / "big movie.bin"
    src.write_bytes(data)
    patches: list[str] = []

    def drop_the_second(route, request):
        if request.method == "PATCH":
            patches.append(request.headers.get("upload-offset"))
            if len(patches) == 2:
                return route.abort("connectionreset")
        return route.continue_()

    page.route(re.compile(r".*/uploads/.*"), drop_the_second)
    page.goto(server.url + "files/")
    page.set_input_files("#upload input[name=file]", str(src))
    page.click("#upload button[type=submit]")
    expect(page.locator("#progress li.done")).to_have_count(1, timeout=60_000)
    expect(file_row(page, "big movie.bin")).to_be_visible()
    assert patches[1] == patches[2] == str(MiB), patches  # the dropped part, sent again
    assert len(patches) == 7, patches  # 6 parts of 1 MiB at most, one twice
    assert not any(u.endswith("/files/big%20movie.bin") for u in watch.urls)  # no PUT
    assert stored_sha256(server.url + "files/big%20movie.bin") == \
        hashlib.sha256(data).hexdigest()
    only_dropped_requests_failed(watch, server.url)


def test_an_upload_continues_after_a_reload(server, browser, tmp_path):
    page, watch = new_page(browser)
    data = os.urandom(8 * MiB)
    src = tmp_path / "backup.tar"
    src.write_bytes(data)
    offsets: list[str] = []
    posts: list[str] = []

    def network_gone_after_three_parts(route, request):
        if request.method == "POST":
            posts.append(request.url)
        if request.method == "PATCH":
            offsets.append(request.headers.get("upload-offset"))
            if len(offsets) > 3:
                return route.abort("internetdisconnected")
        return route.continue_()

    page.route(re.compile(r".*/uploads/.*"), network_gone_after_three_parts)
    page.goto(server.url + "files/")
    page.set_input_files("#upload input[name=file]", str(src))
    page.click("#upload button[type=submit]")
    for _ in range(600):  # three parts stored, the fourth failing
        if len(offsets) > 3:
            break
        page.wait_for_timeout(50)
    assert len(offsets) > 3, offsets
    page.reload()  # the person gives up waiting, and comes back later
    page.unroute(re.compile(r".*/uploads/.*"))
    resumed: list[str] = []
    page.on("request", lambda r: r.method == "PATCH" and resumed.append(
        r.headers.get("upload-offset")))
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    page.set_input_files("#upload input[name=file]", str(src))  # the same file again
    page.click("#upload button[type=submit]")
    expect(page.locator("#progress li.done")).to_have_count(1, timeout=60_000)
    assert len(posts) == 1, posts  # one upload, continued
    assert resumed and resumed[0] == str(3 * MiB), resumed
    assert stored_sha256(server.url + "files/backup.tar") == hashlib.sha256(data).hexdigest()
    only_dropped_requests_failed(watch, server.url)


def test_a_folder_chosen_or_files_dropped_keep_their_structure(server, browser, tmp_path):
    page, watch = new_page(browser)
    tree = tmp_path / "album"
    contents = {"album/a.txt": b"a\n", "album/2025/b.bin": os.urandom(1000),
                "album/2025/june/c.bin": os.urandom(2 * MiB + 3)}  # c goes through tus
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    page.goto(server.url + "files/inbox/")
    page.set_input_files("#upload input.folder", str(tree))
    page.click("#upload button[type=submit]")
    expect(page.locator("#progress li.done")).to_have_count(3, timeout=60_000)
    for name, data in contents.items():
        assert stored_sha256(server.url + "files/inbox/" + name) == \
            hashlib.sha256(data).hexdigest(), name

    # two files dropped on the form (a DataTransfer made in the page)
    dropped = page.evaluate_handle("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["one"], "one.txt", {type: "text/plain"}));
        dt.items.add(new File([new Uint8Array(1500000)], "two.bin"));
        return dt; }""")
    page.dispatch_event("#upload", "drop", {"dataTransfer": dropped})
    expect(page.locator("#progress li.done")).to_have_count(2, timeout=60_000)
    assert stored_sha256(server.url + "files/inbox/one.txt") == \
        hashlib.sha256(b"one").hexdigest()
    assert stored_sha256(server.url + "files/inbox/two.bin") == \
        hashlib.sha256(bytes(1500000)).hexdigest()
    expect(file_row(page, "inbox/one.txt")).to_be_visible()
    watch.check(server.url)
