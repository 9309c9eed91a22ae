"""The test-server harness (tests/servers) with the real client libraries.

CouchDB API through couchdb-python, MongoDB wire through pymongo's GridFS:
the calls a storage backend makes, against the servers the suite starts
(or the real ones named by COUCHDB_URL / MONGODB_URI).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import urllib.parse
import uuid

import pytest

from servers import RunningCouchDB, RunningMongoDB, start_couchdb, start_mongodb

SIZE = 20 * 1024 * 1024 + 12345  # a ~20 MB file that is not a whole number of chunks


class PatternFile(io.RawIOBase):
    """``size`` reproducible pseudo-random bytes, read as a stream (never all in memory)."""

    def __init__(self, size: int, seed: bytes = b"fileserver"):
        self.size, self.pos = size, 0
        self.block = hashlib.sha256(seed).digest() * 2048  # 64 KiB repeating block
        self.block = bytes(b ^ (i * 7 % 251) for i, b in enumerate(self.block))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        start = self.pos % len(self.block)
        n = min(len(buffer), self.size - self.pos, len(self.block) - start)
        buffer[:n] = self.block[start:start + n]
        self.pos += n
        return n

    def slice(self, start: int, stop: int) -> bytes:
        out = bytearray()
        while start < stop:
            offset = start % len(self.block)
            piece = self.block[offset:offset + stop - start]
            out += piece
            start += len(piece)
        return bytes(out)

    def sha256(self) -> str:
        return sha256_of_stream(PatternFile(self.size).read)[0]


def sha256_of_stream(read, chunk: int = 256 * 1024) -> tuple[str, int]:
    digest, total = hashlib.sha256(), 0
    while data := read(chunk):
        digest.update(data)
        total += len(data)
    return digest.hexdigest(), total


# -- CouchDB API ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def couch(tmp_path_factory) -> RunningCouchDB:
    server = start_couchdb(tmp_path_factory.mktemp("couchdb"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def couch_setup(couch):
    """A fresh database with a member user, created by the server admin."""
    import couchdb

    admin = couchdb.Server(couch.admin_url)
    name = f"test-{uuid.uuid4().hex[:12]}"
    member, password = f"member-{uuid.uuid4().hex[:8]}", "member-secret"
    outsider = f"outsider-{uuid.uuid4().hex[:8]}"
    db = admin.create(name)
    db.security = {"admins": {"names": [], "roles": []},
                   "members": {"names": [member], "roles": []}}
    admin.add_user(member, password)
    admin.add_user(outsider, "outsider-secret")
    yield {"admin": admin, "name": name, "member": member, "password": password,
           "outsider": outsider}
    del admin[name]
    users = admin["_users"]
    for user in (member, outsider):
        users.delete(users[f"org.couchdb.user:{user}"])


def member_db(couch, setup):
    import couchdb

    return couchdb.Server(couch.user_url(setup["member"], setup["password"]))[setup["name"]]


def test_couchdb_security_as_on_couchdb(couch, couch_setup):
    import couchdb

    name = couch_setup["name"]
    assert couch_setup["admin"][name].security["members"]["names"] == [couch_setup["member"]]
    # a member reads and writes ordinary documents ...
    db = member_db(couch, couch_setup)
    doc_id, rev = db.save({"_id": "plain", "kind": "test"})
    assert db["plain"]["kind"] == "test"
    # ... but neither design documents nor _security (CouchDB: 403; this server: 401)
    with pytest.raises((couchdb.http.Unauthorized, couchdb.http.Forbidden)):
        db.save({"_id": "_design/nope", "views": {}})
    with pytest.raises((couchdb.http.Unauthorized, couchdb.http.Forbidden)):
        db.security = {}
    # an authenticated non-member and an anonymous client are refused
    outsider = couchdb.Server(couch.user_url(couch_setup["outsider"], "outsider-secret"))
    with pytest.raises((couchdb.http.Unauthorized, couchdb.http.Forbidden)):
        outsider[name]["plain"]
    with pytest.raises((couchdb.http.Unauthorized, couchdb.http.Forbidden)):
        couchdb.Server(couch.url)[name]["plain"]
    # a wrong password is refused
    with pytest.raises(couchdb.http.Unauthorized):
        couchdb.Server(couch.user_url(couch_setup["member"], "wrong"))[name]["plain"]


def test_couchdb_non_admin_cannot_create_or_delete_a_database(couch, couch_setup):
    """CouchDB says 401. Stock express-pouchdb died on both (pouchdb-server #374)."""
    import couchdb

    member = couchdb.Server(couch.user_url(couch_setup["member"], couch_setup["password"]))
    with pytest.raises((couchdb.http.Unauthorized, couchdb.http.Forbidden)):
        member.create(f"nope-{uuid.uuid4().hex[:8]}")
    with pytest.raises((couchdb.http.Unauthorized, couchdb.http.Forbidden)):
        del member[couch_setup["name"]]
    # still up, and the database is still there and usable
    admin = couchdb.Server(couch.admin_url)
    assert admin.version()
    assert couch_setup["name"] in admin
    member_db(couch, couch_setup).save({"_id": "after-refused-delete"})


def test_couchdb_big_attachment_streams_both_ways(couch, couch_setup):
    db = member_db(couch, couch_setup)
    doc = {"_id": "big", "size": SIZE}
    db.save(doc)
    source = PatternFile(SIZE)
    db.put_attachment(doc, io.BufferedReader(source, 1024 * 1024), "blob.bin",
                      "application/octet-stream")
    assert doc["_rev"].startswith("2-")
    stored = db["big"]["_attachments"]["blob.bin"]
    assert stored["length"] == SIZE and stored["content_type"] == "application/octet-stream"

    body = db.get_attachment("big", "blob.bin")
    try:
        digest, total = sha256_of_stream(body.read)
    finally:
        body.close()
    assert total == SIZE
    assert digest == source.sha256()

    # Range: real CouchDB answers 206; this test server sends the whole body (200)
    url = urllib.parse.urlsplit(couch.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    auth = base64.b64encode(f"{couch_setup['member']}:{couch_setup['password']}".encode())
    conn.request("GET", f"{url.path}{couch_setup['name']}/big/blob.bin",
                 headers={"Range": "bytes=1000000-1000999", "Authorization": f"Basic {auth.decode()}"})
    response = conn.getresponse()
    try:
        assert response.status in (200, 206)
        if response.status == 206:
            assert response.getheader("Content-Range") == f"bytes 1000000-1000999/{SIZE}"
            assert response.read() == source.slice(1_000_000, 1_001_000)
        else:
            assert int(response.getheader("Content-Length")) == SIZE
            skipped = 0
            while skipped < 1_000_000:
                skipped += len(response.read(min(65536, 1_000_000 - skipped)))
            assert response.read(1000) == source.slice(1_000_000, 1_001_000)
    finally:
        conn.close()
    print(f"couchdb Range GET -> {response.status}")


def test_couchdb_views_and_all_docs(couch, couch_setup):
    admin_db = couch_setup["admin"][couch_setup["name"]]
    admin_db.save({
        "_id": "_design/files", "language": "javascript",
        "views": {"by_size": {
            "map": "function (doc) { if (doc.type === 'file') { emit(doc.size, doc.name); } }"}},
    })
    db = member_db(couch, couch_setup)
    db.update([{"_id": f"file-{i:03d}", "type": "file", "size": i * 10, "name": f"n{i}"}
               for i in range(30)])
    # couchdb-python POSTs {"keys": [...]} to _view/by_size for keys=
    rows = db.view("files/by_size", keys=[250, 30, 999, 0])
    assert [(row.key, row.value, row.id) for row in rows] == [
        (250, "n25", "file-025"), (30, "n3", "file-003"), (0, "n0", "file-000")]
    rows = db.view("_all_docs", startkey="file-010", endkey="file-013")
    assert [row.id for row in rows] == ["file-010", "file-011", "file-012", "file-013"]
    rows = db.view("_all_docs", startkey="file-", endkey="file-\ufff0", include_docs=True,
                   limit=3, skip=1)
    assert [row.doc["size"] for row in rows] == [10, 20, 30]


# -- MongoDB wire --------------------------------------------------------------------


@pytest.fixture(scope="module")
def mongo(tmp_path_factory) -> RunningMongoDB:
    server = start_mongodb(tmp_path_factory.mktemp("mongodb"))
    yield server
    server.stop()


@pytest.fixture
def mongo_db(mongo):
    import pymongo

    client = pymongo.MongoClient(mongo.uri, serverSelectionTimeoutMS=10_000)
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)
    client.close()


def test_mongodb_gridfs_roundtrip_seek_delete(mongo_db):
    import gridfs

    bucket = gridfs.GridFSBucket(mongo_db)
    source = PatternFile(SIZE)
    file_id = bucket.upload_from_stream("blob.bin", io.BufferedReader(source, 1024 * 1024),
                                        metadata={"key": "big", "content_type": "application/x"})
    files = mongo_db["fs.files"]
    assert files.find_one({"_id": file_id})["length"] == SIZE
    chunk_size = files.find_one({"_id": file_id})["chunkSize"]
    assert mongo_db["fs.chunks"].count_documents({"files_id": file_id}) == -(-SIZE // chunk_size)

    with bucket.open_download_stream(file_id) as out:
        assert out.length == SIZE and out.metadata["key"] == "big"
        digest, total = sha256_of_stream(out.read)
    assert (digest, total) == (source.sha256(), SIZE)

    with bucket.open_download_stream(file_id) as out:
        for offset in (10_000_000, chunk_size - 10, 0, SIZE - 100):
            out.seek(offset)
            assert out.read(1000) == source.slice(offset, min(offset + 1000, SIZE))
        out.seek(-50, os.SEEK_END)
        assert out.read() == source.slice(SIZE - 50, SIZE)

    bucket.delete(file_id)
    assert files.count_documents({"_id": file_id}) == 0
    assert mongo_db["fs.chunks"].count_documents({"files_id": file_id}) == 0
    with pytest.raises(gridfs.errors.NoFile):
        bucket.open_download_stream(file_id)
    with pytest.raises(gridfs.errors.NoFile):
        bucket.delete(file_id)


def test_mongodb_indexes_in_queries_and_revisions(mongo_db):
    import gridfs
    import pymongo

    bucket = gridfs.GridFSBucket(mongo_db)
    ids = {}
    for name in ("a.txt", "b.txt", "c.txt", "a.txt"):  # two revisions of a.txt
        ids.setdefault(name, []).append(
            bucket.upload_from_stream(name, io.BytesIO(name.encode() * 1000),
                                      metadata={"key": f"{name}#{len(ids.get(name, []))}"}))
    files = mongo_db["fs.files"]
    # GridFS's own indexes, and one of ours (unique)
    indexes = files.index_information()
    assert any(info["key"] == [("filename", 1), ("uploadDate", 1)] for info in indexes.values())
    chunk_indexes = mongo_db["fs.chunks"].index_information()
    assert any(info["key"] == [("files_id", 1), ("n", 1)] and info.get("unique")
               for info in chunk_indexes.values())
    files.create_index([("metadata.key", pymongo.ASCENDING)], unique=True, name="by_key")
    assert files.index_information()["by_key"]["unique"]
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        files.insert_one({"metadata": {"key": "b.txt#0"}})

    found = files.find({"metadata.key": {"$in": ["a.txt#1", "c.txt#0", "zzz"]}},
                       sort=[("metadata.key", pymongo.ASCENDING)])
    assert [(doc["filename"], doc["_id"]) for doc in found] == [
        ("a.txt", ids["a.txt"][1]), ("c.txt", ids["c.txt"][0])]
    found = files.find({"_id": {"$in": [ids["b.txt"][0], ids["a.txt"][0]]}}, {"filename": 1})
    assert sorted(doc["filename"] for doc in found) == ["a.txt", "b.txt"]
    # a name-prefix listing as a range on the indexed filename. (SecantusDB 0.7.0b3
    # matches nothing for a BSON regex value, re.compile(...), on an indexed field;
    # {"$regex": "..."} and ranges work.)
    found = files.find({"filename": {"$gte": "a", "$lt": "b"}}, sort=[("uploadDate", 1)])
    assert [doc["_id"] for doc in found] == ids["a.txt"]

    # newest revision by uploadDate, as GridFS's by-name lookups do
    newest = bucket.open_download_stream_by_name("a.txt")
    assert newest._id == ids["a.txt"][1] and newest.read() == b"a.txt" * 1000
    oldest = bucket.open_download_stream_by_name("a.txt", revision=0)
    assert oldest._id == ids["a.txt"][0]
    listed = [f._id for f in bucket.find({"filename": "a.txt"}, sort=[("uploadDate", -1)])]
    assert listed == [ids["a.txt"][1], ids["a.txt"][0]]

    bucket.delete(ids["b.txt"][0])
    assert sorted(doc["filename"] for doc in files.find({}, {"filename": 1})) == [
        "a.txt", "a.txt", "c.txt"]
