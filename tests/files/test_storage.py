"""The storage backends on their own: a local directory, and S3 against moto's server
(a real HTTP S3 endpoint, started by the tests as a child process)."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from installsure.storage import (
    InvalidKeyError,
    LocalDirectory,
    ObjectMissingError,
    StorageError,
)
from installsure.storage.local import STALE_PARTIAL_SECONDS
from tests.fixtures.moto import s3_settings

MIB = 1024 * 1024


def read_all(backend: Any, key: str, start: int = 0, end: int | None = None) -> bytes:
    reader = backend.open(key, start, end)
    try:
        out = b""
        while chunk := reader.read(100_000):
            out += chunk
        return out
    finally:
        reader.close()


# -- local directory ----------------------------------------------------------------


def test_local_objects_appear_only_when_committed(tmp_path: Path) -> None:
    """Written bytes live under .partial/ until commit; then the object is under its key
    with exactly those bytes, and byte ranges of it read back right."""
    backend = LocalDirectory(tmp_path)
    backend.prepare()
    writer = backend.create("ab/abc-1")
    writer.write(b"hello ")
    writer.write(bytearray(b"world"))
    assert backend.size("ab/abc-1") is None
    assert len(list((tmp_path / ".partial").iterdir())) == 1
    writer.commit()
    assert (tmp_path / "ab" / "abc-1").read_bytes() == b"hello world"
    assert list((tmp_path / ".partial").iterdir()) == []
    assert backend.size("ab/abc-1") == 11
    assert read_all(backend, "ab/abc-1", 6) == b"world"
    assert read_all(backend, "ab/abc-1", 0, 4) == b"hello"
    backend.delete(["ab/abc-1", "ab/never-there"])
    assert backend.size("ab/abc-1") is None
    with pytest.raises(ObjectMissingError):
        backend.open("ab/abc-1")


def test_local_abort_leaves_nothing_and_stale_partials_go_at_start(tmp_path: Path) -> None:
    """An aborted writer leaves no file; at prepare, partial files older than a day are
    removed and younger ones (another process's upload) are kept."""
    backend = LocalDirectory(tmp_path)
    backend.prepare()
    writer = backend.create("cd/x")
    writer.write(b"x" * 1000)
    writer.abort()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    old = tmp_path / ".partial" / "old.part"
    young = tmp_path / ".partial" / "young.part"
    old.write_bytes(b"o")
    young.write_bytes(b"y")
    stale = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(old, (stale, stale))
    backend.prepare()
    assert not old.exists()
    assert young.exists()


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/abs", "A/Upper", "a//b",
                                 ".hidden", "a/.", "", "x" * 200, "a\x00b"])
def test_keys_that_could_escape_are_refused(tmp_path: Path, key: str) -> None:
    """Keys are generated; anything not shaped like one (climbing, absolute, hidden,
    empty, NUL, too long) is refused before touching the disk."""
    backend = LocalDirectory(tmp_path)
    with pytest.raises(InvalidKeyError):
        backend.create(key)
    with pytest.raises(InvalidKeyError):
        backend.open(key)


def test_an_unusable_directory_says_what_to_fix(tmp_path: Path) -> None:
    """A storage directory that cannot be created fails prepare with the path and the
    setting to change."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError, match=r"storage\.local_path"):
        LocalDirectory(blocker / "files").prepare()


# -- S3, against moto's server -------------------------------------------------------


@pytest.fixture
def bucket(moto_endpoint: str) -> Any:
    """An S3Bucket backend on a new bucket of the moto server, parts of 5 MiB."""
    from installsure.storage.s3 import S3Bucket

    name = f"b-{os.urandom(4).hex()}"
    backend = S3Bucket(s3_settings(moto_endpoint, name, s3_part_size=5 * MIB,
                                   s3_prefix="pre/"))
    backend.client.create_bucket(Bucket=name)
    backend.prepare()
    return backend


def test_s3_small_and_multipart_objects_round_trip(bucket: Any) -> None:
    """A small object is one PUT; a 12 MiB one goes in 5 MiB parts (a multipart upload,
    completed on commit); both read back whole and by range, under the prefix."""
    small = b"tiny object"
    writer = bucket.create("aa/small")
    writer.write(small)
    assert writer._upload_id is None
    writer.commit()
    big = os.urandom(12 * MIB)
    writer = bucket.create("aa/big")
    for start in range(0, len(big), 1_000_000):
        writer.write(big[start:start + 1_000_000])
    assert writer._upload_id is not None  # parts were sent while writing
    writer.commit()
    assert read_all(bucket, "aa/small") == small
    assert read_all(bucket, "aa/big") == big
    assert read_all(bucket, "aa/big", 5 * MIB - 3, 5 * MIB + 2) == big[5 * MIB - 3:5 * MIB + 3]
    assert bucket.size("aa/big") == len(big)
    listed = bucket.client.list_objects_v2(Bucket=bucket.bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == ["pre/aa/big", "pre/aa/small"]
    bucket.delete(["aa/big", "aa/small", "aa/missing"])
    assert bucket.size("aa/big") is None
    with pytest.raises(ObjectMissingError):
        bucket.open("aa/big")


def test_s3_abort_leaves_no_object_and_no_parts(bucket: Any) -> None:
    """Aborting a multipart upload part-way leaves neither the object nor pending
    parts in the bucket."""
    writer = bucket.create("bb/gone")
    writer.write(os.urandom(6 * MIB))
    assert writer._upload_id is not None
    writer.abort()
    assert bucket.size("bb/gone") is None
    uploads = bucket.client.list_multipart_uploads(Bucket=bucket.bucket)
    assert uploads.get("Uploads", []) == []


def test_s3_presigned_urls_serve_the_object_with_its_name(bucket: Any) -> None:
    """A presigned URL serves the object to anyone holding it, with the
    Content-Disposition and Content-Type asked for."""
    writer = bucket.create("cc/doc")
    writer.write(b"%PDF-1.7 body")
    writer.commit()
    url = bucket.presigned_url("cc/doc", 60, 'attachment; filename="plan.pdf"',
                               "application/pdf")
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        assert response.read() == b"%PDF-1.7 body"
        assert response.headers["Content-Disposition"] == 'attachment; filename="plan.pdf"'
        assert response.headers["Content-Type"] == "application/pdf"


def test_s3_errors_name_what_failed(moto_endpoint: str) -> None:
    """A bucket that does not exist fails prepare with a StorageError naming the call."""
    from installsure.storage.s3 import S3Bucket

    backend = S3Bucket(s3_settings(moto_endpoint, "no-such-bucket"))
    with pytest.raises(StorageError, match="HeadBucket 'no-such-bucket'"):
        backend.prepare()


# -- the files API on S3 -------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["streamed", "presigned"])
def s3_world(request: pytest.FixtureRequest, moto_endpoint: str, database: Any,
             tmp_path: Path) -> Iterator[Any]:
    """The files API with S3 storage (5 MiB parts) on a new moto bucket; downloads
    streamed through the server, or redirected to presigned URLs."""
    from installsure.storage.s3 import S3Bucket
    from tests.files.world import serve_files

    name = f"f-{os.urandom(4).hex()}"
    backend = S3Bucket(s3_settings(moto_endpoint, name, s3_part_size=5 * MIB))
    backend.client.create_bucket(Bucket=name)
    yield from serve_files(database, tmp_path, backend=backend, presigned=request.param)


@pytest_twisted.ensureDeferred
async def test_uploads_and_downloads_through_s3(s3_world: Any, moto_endpoint: str) -> None:
    """An upload of a 13 MiB file with S3 storage is streamed into the bucket in parts;
    its download is streamed from the bucket (a range too), or, with presigned
    downloads, a 302 to a URL of the bucket that serves the same bytes."""
    import hashlib
    import json

    import treq
    from twisted.internet import threads

    from tests.files.helpers import CONTENT_TYPE, PNG, multipart

    world = s3_world
    backend = world.storage.backend
    presigned = world.presigned
    content = PNG + os.urandom(13 * MIB)
    user = await world.user()
    response = await treq.post(world.base + "/api/files/upload",
                               data=multipart([("file", "scan.png", content)]),
                               headers={**user, "Content-Type": CONTENT_TYPE},
                               persistent=False)
    answer = json.loads(await response.content())
    assert response.code == 201, answer
    record = answer["data"][0]
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    key = f"{record['id'][:2]}/{record['id']}"
    assert backend.size(key) == len(content)
    url = f"{world.base}/api/files/{record['id']}/download"
    response = await treq.get(url, headers=user, persistent=False, allow_redirects=False)
    body = await response.content()
    if presigned:
        assert (response.code, body) == (302, b"")
        location = response.headers.getRawHeaders("Location")[0]
        assert location.startswith(moto_endpoint)

        def fetch() -> tuple[bytes, str]:
            with urllib.request.urlopen(location, timeout=10) as got:  # noqa: S310
                return got.read(), got.headers["Content-Disposition"]

        fetched, disposition = await threads.deferToThread(fetch)
        assert fetched == content
        assert disposition == 'attachment; filename="scan.png"'
    else:
        assert response.code == 200
        assert body == content
        response = await treq.get(url, headers={**user, "Range": "bytes=-10"},
                                  persistent=False)
        assert (response.code, await response.content()) == (206, content[-10:])


def test_a_writer_made_before_prepare_still_works(tmp_path: Path) -> None:
    """The service prepares the backend on its pool as it starts; an upload that comes
    first (or a directory removed since) still gets its partial file and commits."""
    backend = LocalDirectory(tmp_path / "not-yet")
    writer = backend.create("ab/early")
    writer.write(b"first")
    writer.commit()
    assert read_all(backend, "ab/early") == b"first"
