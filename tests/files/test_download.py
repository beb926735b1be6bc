"""Downloads over a real socket, on both wires: Range, ETag, If-None-Match, If-Range,
Content-Disposition, HEAD, and large files streamed whole."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
import treq

from tests.files.helpers import CONTENT_TYPE, PNG, multipart
from tests.files.world import FilesWorld

CONTENT = PNG + os.urandom(1000)


async def uploaded(world: FilesWorld, headers: dict[str, str], name: str = "Plan Ä.png",
                   content: bytes = CONTENT) -> dict[str, Any]:
    response = await treq.post(world.base + "/api/files/upload",
                               data=multipart([("file", name, content)]),
                               headers={**headers, "Content-Type": CONTENT_TYPE},
                               persistent=False)
    answer = json.loads(await response.content())
    assert response.code == 201, json.dumps(answer)
    record: dict[str, Any] = answer["data"][0]
    return record


async def get(world: FilesWorld, path: str, headers: dict[str, str],
              method: str = "GET") -> tuple[Any, bytes]:
    response = await treq.request(method, world.base + path, headers=headers,
                                  persistent=False)
    return response, await response.content()


def header(response: Any, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


@pytest_twisted.ensureDeferred
async def test_a_download_is_the_bytes_with_etag_and_disposition(world: FilesWorld) -> None:
    """GET .../download answers the stored bytes with the file's type, its length, a
    strong ETag of its SHA-256, Accept-Ranges and an attachment Content-Disposition
    carrying the Unicode name (filename*) and an ASCII fallback."""
    user = await world.user()
    record = await uploaded(world, user)
    response, body = await get(world, f"/api/files/{record['id']}/download", user)
    assert response.code == 200
    assert body == CONTENT
    assert header(response, "Content-Type") == "image/png"
    assert response.length == len(CONTENT)  # twisted's client keeps Content-Length here
    assert header(response, "ETag") == f'"{hashlib.sha256(CONTENT).hexdigest()}"'
    assert header(response, "Accept-Ranges") == "bytes"
    assert header(response, "Content-Disposition") == (
        "attachment; filename=\"Plan A.png\"; filename*=UTF-8''" + quote("Plan Ä.png"))
    assert header(response, "X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize(("asked", "status", "expected"), [
    ("bytes=0-9", 206, (0, 9)),
    ("bytes=10-", 206, (10, None)),
    ("bytes=-5", 206, (-5, None)),
    ("bytes=5-999999", 206, (5, None)),
    ("bytes=-999999", 206, (0, None)),
    ("bytes=0-0", 206, (0, 0)),
    ("bytes=0-1,5-6", 200, None),
    ("items=0-1", 200, None),
    ("bytes=9-2", 200, None),
    ("bytes=abc", 200, None),
])
@pytest_twisted.ensureDeferred
async def test_ranges(world: FilesWorld, asked: str, status: int,
                      expected: tuple[int, int | None] | None) -> None:
    """One byte range is answered 206 with exactly those bytes and Content-Range (ends
    past the file are cut to it, a suffix longer than the file is the whole file);
    several ranges, another unit or a malformed range are ignored (200, all bytes)."""
    user = await world.user()
    record = await uploaded(world, user)
    response, body = await get(world, f"/api/files/{record['id']}/download",
                               {**user, "Range": asked})
    assert response.code == status
    if expected is None:
        assert body == CONTENT
        assert header(response, "Content-Range") is None
        return
    start, end = expected
    part = CONTENT[start:] if end is None else CONTENT[start:end + 1]
    assert body == part
    first = start if start >= 0 else len(CONTENT) + start
    assert header(response, "Content-Range") == (
        f"bytes {first}-{first + len(part) - 1}/{len(CONTENT)}")
    assert response.length == len(part)


@pytest.mark.parametrize("asked", ["bytes=999999-", "bytes=-0", f"bytes={len(CONTENT)}-"])
@pytest_twisted.ensureDeferred
async def test_unsatisfiable_ranges_are_416(world: FilesWorld, asked: str) -> None:
    """A range starting at or past the end, or the last 0 bytes, is 416
    RANGE_NOT_SATISFIABLE with Content-Range: bytes */<size>."""
    user = await world.user()
    record = await uploaded(world, user)
    response, body = await get(world, f"/api/files/{record['id']}/download",
                               {**user, "Range": asked})
    assert response.code == 416
    assert json.loads(body)["code"] == "RANGE_NOT_SATISFIABLE"
    assert header(response, "Content-Range") == f"bytes */{len(CONTENT)}"


@pytest_twisted.ensureDeferred
async def test_if_none_match_and_if_range(world: FilesWorld) -> None:
    """If-None-Match with the ETag (or among others, or weak, or *) is 304 without a
    body; another ETag gets the file. If-Range with the ETag keeps the range, another
    value sends the whole file."""
    user = await world.user()
    record = await uploaded(world, user)
    path = f"/api/files/{record['id']}/download"
    etag = f'"{record["sha256"]}"'
    for sent in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        response, body = await get(world, path, {**user, "If-None-Match": sent})
        assert (response.code, body) == (304, b""), sent
        assert header(response, "ETag") == etag
    response, body = await get(world, path, {**user, "If-None-Match": '"other"'})
    assert (response.code, body) == (200, CONTENT)
    response, body = await get(world, path, {**user, "Range": "bytes=0-3", "If-Range": etag})
    assert (response.code, body) == (206, CONTENT[:4])
    response, body = await get(world, path, {**user, "Range": "bytes=0-3",
                                             "If-Range": '"stale"'})
    assert (response.code, body) == (200, CONTENT)


@pytest_twisted.ensureDeferred
async def test_head_sends_the_headers_without_the_bytes(world: FilesWorld) -> None:
    """HEAD of a download has the download's Content-Length and ETag, and no body (read
    on a raw socket: an HTTP client hides a HEAD's Content-Length)."""
    import socket

    from twisted.internet import threads

    user = await world.user()
    record = await uploaded(world, user)

    def head() -> bytes:
        with socket.create_connection(("127.0.0.1", world.number), timeout=5) as sock:
            sock.sendall(f"HEAD /api/files/{record['id']}/download HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: {user['Authorization']}\r\n"
                         "Connection: close\r\n\r\n".encode())
            received = b""
            while data := sock.recv(65536):
                received += data
            return received

    raw = await threads.deferToThread(head)
    top, _, body = raw.partition(b"\r\n\r\n")
    assert top.startswith(b"HTTP/1.1 200 ")
    assert body == b""
    assert f"Content-Length: {len(CONTENT)}".encode() in top
    assert f'ETag: "{record["sha256"]}"'.encode() in top


@pytest_twisted.ensureDeferred
async def test_a_large_file_comes_back_whole(fast_world: FilesWorld) -> None:
    """A 12 MiB file is streamed back byte for byte (many chunks through the producer)."""
    user = await fast_world.user()
    content = PNG + os.urandom(12 * 1024 * 1024)
    record = await uploaded(fast_world, user, "big.png", content)
    response, body = await get(fast_world, f"/api/files/{record['id']}/download", user)
    assert response.code == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(content).hexdigest()


@pytest_twisted.ensureDeferred
async def test_thumbnails_are_404_until_one_exists(fast_world: FilesWorld) -> None:
    """A file without a thumbnail answers 404 at /thumbnail; once processing recorded
    one (set_status with a thumbnail key) it is served as image/png and the record's
    thumbnailUrl points at it."""
    from installsure.db.files import set_status
    from installsure.storage.interface import check_key

    user = await fast_world.user()
    record = await uploaded(fast_world, user)
    response, body = await get(fast_world, f"/api/files/{record['id']}/thumbnail", user)
    assert response.code == 404
    assert json.loads(body)["code"] == "NOT_FOUND"
    key = check_key(f"th/{record['id']}.png")

    def put() -> None:
        writer = fast_world.storage.backend.create(key)
        writer.write(PNG)
        writer.commit()

    await fast_world.storage.run(put)
    await fast_world.database.run(
        lambda c: set_status(c, record["id"], "processed", thumbnail_key=key))
    response, body = await get(fast_world, f"/api/files/{record['id']}/thumbnail", user)
    assert (response.code, body) == (200, PNG)
    assert header(response, "Content-Type") == "image/png"
    response, body = await get(fast_world, f"/api/files/{record['id']}", user)
    data = json.loads(body)["data"]
    assert data["thumbnailUrl"] == f"/api/files/{record['id']}/thumbnail"
    assert data["status"] == "processed"
    assert data["processedAt"].endswith("Z")


@pytest_twisted.ensureDeferred
async def test_downloads_answer_as_the_served_openapi_document_says(
    fast_world: FilesWorld,
) -> None:
    """/openapi.json documents the download's header parameters (Range, If-Range,
    If-None-Match) and its answers 200, 206, 302, 304 (no body) and 416 (the error
    envelope); the route's real 200, 206, 304 and 416 each carry every header the
    document requires of that status, matching its pattern."""
    world = fast_world
    response, raw = await get(world, "/openapi.json", {})
    assert response.code == 200
    operation = json.loads(raw)["paths"]["/api/files/{id}/download"]["get"]
    assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == [
        "Range", "If-Range", "If-None-Match"]
    documented = operation["responses"]
    assert {"200", "206", "302", "304", "416", "401", "404", "503"} <= set(documented)
    assert "content" not in documented["304"]
    assert "content" not in documented["302"]
    assert documented["416"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert documented["206"]["headers"]["Content-Range"]["required"] is True
    user = await world.user()
    record = await uploaded(world, user)
    path = f"/api/files/{record['id']}/download"
    etag = f'"{record["sha256"]}"'
    for status, asked in ((200, {}), (206, {"Range": "bytes=2-9"}),
                          (304, {"If-None-Match": etag}),
                          (416, {"Range": f"bytes={len(CONTENT) + 5}-"})):
        response, body = await get(world, path, {**user, **asked})
        assert response.code == status, asked
        for name, spec in documented[str(status)].get("headers", {}).items():
            value = header(response, name)
            assert value is not None or not spec["required"], (status, name)
            pattern = spec["schema"].get("pattern")
            if value is not None and pattern is not None:
                assert re.search(pattern, value), (status, name, value)
        if status == 304:
            assert body == b""
