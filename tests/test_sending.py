"""Local files are sent with os.sendfile (fileserver/sending.py): whole,
in ranges, and one after another on a keep-alive connection, byte for byte."""

from __future__ import annotations

import http.client
import io
import os
from urllib.parse import urlsplit

from conftest import start_server
from fileserver.sending import QUEUE_AS_IS, BytesBuffer, SendfileBuffer


def test_only_files_with_a_descriptor_take_the_kernel_path(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with open(path, "rb") as f:
        assert SendfileBuffer(f).fd == f.fileno()
    buffer = SendfileBuffer(io.BytesIO(b"in memory"))
    assert buffer.fd is None
    buffer.prepare()
    assert buffer.get(4) == b"in m"  # waitress's own path


def test_a_queued_piece_is_sent_from_where_it_is():
    data = bytes(range(256)) * (QUEUE_AS_IS // 256)
    buffer = BytesBuffer(data)
    assert len(buffer) == len(data)
    assert buffer.get(10) == data[:10] and len(buffer) == len(data)  # a peek
    buffer.skip(10, True)
    assert buffer.get(5, skip=True) == data[10:15]
    assert buffer.get() == data[15:] and len(buffer) == len(data) - 15
    buffer.skip(len(data) - 15)
    assert len(buffer) == 0 and buffer.get() == b""
    try:
        buffer.skip(1)
    except ValueError:
        pass
    else:
        raise AssertionError("skipped past the end")


def test_large_local_files_arrive_whole_and_in_ranges(tmp_path):
    server = start_server(tmp_path, f"[fileserver]\ndata_dir = {tmp_path / 'data'}\n")
    try:
        data = os.urandom(24 * 1024 * 1024 + 7)
        parts = urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("PUT", "/files/big.bin", data)
        stored = conn.getresponse()
        assert stored.status == 201, stored.read()
        stored.read()
        for first, last in [(None, None), (0, 0), (5, 3 * 1024 * 1024), (len(data) - 10, None),
                            (None, None)]:
            headers = {} if first is None else {
                "Range": f"bytes={first}-{'' if last is None else last}"}
            conn.request("GET", "/files/big.bin", headers=headers)  # one connection throughout
            reply = conn.getresponse()
            body = reply.read()
            expected = data if first is None else data[first:None if last is None else last + 1]
            assert reply.status == (200 if first is None else 206)
            assert body == expected, (first, last, len(body))
        conn.close()
    finally:
        server.stop()


def test_answers_without_a_body_keep_the_connection(tmp_path):
    """204 and 304 have no body to delimit: waitress alone closed the
    connection after them (every DELETE, tus PATCH and revalidation)."""
    server = start_server(tmp_path, f"[fileserver]\ndata_dir = {tmp_path / 'data'}\n")
    try:
        parts = urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("PUT", "/files/a.txt", b"abc")
        reply = conn.getresponse()
        reply.read()
        conn.request("GET", "/files/a.txt")
        reply = conn.getresponse()
        reply.read()
        etag = reply.getheader("ETag")
        sock = conn.sock
        for method, headers, status in [("GET", {"If-None-Match": etag}, 304),
                                        ("DELETE", {}, 204), ("GET", {}, 404),
                                        ("DELETE", {"Connection": "close"}, 404)]:
            conn.request(method, "/files/a.txt", headers=headers)
            reply = conn.getresponse()
            reply.read()
            assert reply.status == status
            if headers.get("Connection") == "close":  # asked for: closed
                assert reply.getheader("Connection") == "close" and conn.sock is None
            else:
                assert conn.sock is sock and reply.getheader("Connection") is None, status
        conn.close()
    finally:
        server.stop()
