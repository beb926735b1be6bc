"""Upload limits and refusals, over real sockets on both wires and both databases:
each is answered while the client is still sending, and leaves no file and no row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task, threads

from installsure.db import Database
from installsure.files.settings import UploadSettings
from tests.files.helpers import (
    BOUNDARY,
    CONTENT_TYPE,
    PDF,
    PNG,
    abandon_upload,
    multipart,
    part_head,
    send_until_answered,
    upload_head,
)
from tests.files.world import FilesWorld, serve_files

MIB = 1024 * 1024


@pytest.fixture
def small_world(database: Database, tmp_path: Path, wire: str) -> Iterator[FilesWorld]:
    """Files of at most 1 MiB, at most 3 per upload; both wires, both databases."""
    yield from serve_files(database, tmp_path, wire=wire,
                           limits=UploadSettings(max_size=MIB, max_files=3))


async def post(world: FilesWorld, headers: dict[str, str], body: bytes,
               content_type: str = CONTENT_TYPE) -> tuple[int, Any]:
    response = await treq.post(world.base + "/api/files/upload", data=body,
                               headers={**headers, "Content-Type": content_type},
                               persistent=False)
    return response.code, json.loads(await response.content())


async def nothing_left(world: FilesWorld) -> None:
    """No file row and, once the aborts have run, no stored byte (5 s at most)."""
    assert await world.rows() == []
    for _ in range(250):
        if not world.stored_objects():
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    pytest.fail(f"stored files left behind: {world.stored_objects()}")


def answer_of(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def endless_file(total: int) -> Iterator[bytes]:
    chunk = bytes(MIB)
    yield part_head("file", "huge.png") + PNG
    for _ in range(total // MIB):
        yield chunk


@pytest.fixture
def roomy_world(database: Database, tmp_path: Path, wire: str) -> Iterator[FilesWorld]:
    """Files of at most 1 MiB but up to 100 of them: a body may be 100 MiB."""
    yield from serve_files(database, tmp_path, wire=wire,
                           limits=UploadSettings(max_size=MIB, max_files=100))


@pytest_twisted.ensureDeferred
async def test_an_oversized_file_is_answered_413_while_the_client_still_sends(
    roomy_world: FilesWorld,
) -> None:
    """A client sending a 96 MiB file against a 1 MiB limit (the body within what the
    route accepts, so only the per-file limit can stop it) gets 413 PAYLOAD_TOO_LARGE,
    with Connection: close, before it has sent even half the body; nothing is kept."""
    world = roomy_world
    member = await world.user()
    total = 96 * MIB
    head = upload_head(world.number, member, total + 2 * 1024)
    raw, sent = await threads.deferToThread(
        send_until_answered, world.number, head, endless_file(total))
    status, headers, body = answer_of(raw)
    assert status == 413, body
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert "huge.png" in body["error"]
    assert headers["connection"] == "close"
    assert sent < total // 2, f"the answer came after {sent} of {total} bytes"
    await nothing_left(world)


@pytest_twisted.ensureDeferred
async def test_too_many_files_is_413_and_keeps_none(small_world: FilesWorld) -> None:
    """The fourth file of an upload allowing three is answered 413; the three stored
    before it are removed again (all or nothing)."""
    member = await small_world.user()
    body = multipart([("file", f"{n}.png", PNG) for n in range(4)])
    code, answer = await post(small_world, member, body)
    assert code == 413, answer
    assert "at most 3 files" in answer["error"]
    await nothing_left(small_world)


@pytest.mark.parametrize(("name", "content", "why"), [
    ("setup.exe", b"MZ\x90\x00" + bytes(100), "not a file type"),
    ("plan.png", PDF, "is not a .png file"),
    ("scan.pdf", PNG, "is not a .pdf file"),
    ("house.dwg", b"AC10ab" + bytes(100), "is not a .dwg file"),
    ("model.ifc", b"<?xml version='1.0'?><ifc/>", "is not a .ifc file"),
    ("sheet.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "is not a .xlsx file"),
    ("passwd", b"root:x:0:0", "not a file type"),
], ids=["exe", "pdf-named-png", "png-named-pdf", "bad-dwg", "xml-named-ifc", "ole-named-xlsx",
        "no-extension"])
@pytest_twisted.ensureDeferred
async def test_wrong_and_spoofed_types_are_415(
    small_world: FilesWorld, name: str, content: bytes, why: str,
) -> None:
    """An extension not accepted, or content that does not start as the extension says
    (a PDF named .png, an OLE file named .xlsx), is 415 UNSUPPORTED_MEDIA_TYPE."""
    member = await small_world.user()
    code, answer = await post(small_world, member, multipart([("file", name, content)]))
    assert code == 415, answer
    assert answer["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert why in answer["error"]
    await nothing_left(small_world)


@pytest_twisted.ensureDeferred
async def test_signatures_that_match_are_accepted(small_world: FilesWorld) -> None:
    """Files whose leading bytes are their format's (DWG AC1032, GLB, OLE RVT, WebP,
    TIFF, ZIP-based DOCX, STEP with a BOM) and formats without one (CSV) are stored."""
    member = await small_world.user()
    samples = [
        ("house.dwg", b"AC1032" + bytes(64)),
        ("model.glb", b"glTF\x02\x00\x00\x00" + bytes(64)),
        ("tower.rvt", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64)),
    ]
    code, answer = await post(small_world, member, multipart(
        [("file", n, c) for n, c in samples]))
    assert code == 201, answer
    more = [
        ("photo.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(64)),
        ("scan.TIFF", b"II*\x00" + bytes(64)),
        ("report.docx", b"PK\x03\x04" + bytes(64)),
    ]
    code, answer = await post(small_world, member, multipart([("file", n, c) for n, c in more]))
    assert code == 201, answer
    assert [r["extension"] for r in answer["data"]] == ["webp", "tiff", "docx"]
    code, answer = await post(small_world, member, multipart([
        ("file", "part.step", b"\xef\xbb\xbfISO-10303-21;\nHEADER;" + bytes(64)),
        ("file", "items.csv", b"a,b\n1,2\n")]))
    assert code == 201, answer


@pytest_twisted.ensureDeferred
async def test_an_empty_file_is_refused_with_400(small_world: FilesWorld) -> None:
    """A file part with no bytes is 400 VALIDATION_ERROR naming it; nothing is kept."""
    member = await small_world.user()
    code, answer = await post(small_world, member, multipart([
        ("file", "ok.png", PNG), ("file", "empty.txt", b"")]))
    assert code == 400, answer
    assert answer["details"] == [{"field": "file", "message": "'empty.txt' is empty"}]
    await nothing_left(small_world)


@pytest_twisted.ensureDeferred
async def test_an_upload_cut_off_by_closing_the_socket_leaves_nothing(
    small_world: FilesWorld,
) -> None:
    """A client that sends half of a file and closes the connection leaves no stored
    file (not even a partial one) and no row."""
    member = await small_world.user()
    body = multipart([("file", "half.png", PNG + bytes(900 * 1024))])
    head = upload_head(small_world.number, member, len(body))
    await threads.deferToThread(abandon_upload, small_world.number, head,
                                body[: len(body) // 2])
    await task.deferLater(reactor, 0.3, lambda: None)
    await nothing_left(small_world)


@pytest_twisted.ensureDeferred
async def test_hostile_names_are_cleaned_and_never_used_as_paths(
    small_world: FilesWorld,
) -> None:
    """``../../etc/passwd.png`` is kept as ``passwd.png`` (the bytes under a generated
    key inside the storage directory), a Windows path is cut to its last segment and
    control characters are dropped, a 300-character
    name is cut to 255 keeping its extension; ``../../etc/passwd`` has no accepted
    extension (415)."""
    member = await small_world.user()
    long_name = "a" * 296 + ".png"
    code, answer = await post(small_world, member, multipart([
        ("file", "../../etc/passwd.png", PNG),
        ("file", "C:\\fakepath\\bell\x07and\ttab.png", PNG),
        ("file", long_name, PNG)]))
    assert code == 201, answer
    names = [r["originalName"] for r in answer["data"]]
    assert names[:2] == ["passwd.png", "bellandtab.png"]
    assert len(names[2]) == 255
    assert names[2].endswith("a.png")
    root = small_world.storage.backend.root  # type: ignore[attr-defined]
    for path in small_world.stored_objects():
        assert path.is_relative_to(root)
        assert path.name in {r["id"] for r in answer["data"]}
    code, answer = await post(small_world, member, multipart([("file", "../../etc/passwd",
                                                              b"root")]))
    assert code == 415, answer


@pytest_twisted.ensureDeferred
async def test_a_nul_in_a_name_is_dropped_or_refused_but_never_kept(
    small_world: FilesWorld,
) -> None:
    """A file name with a NUL byte is either refused (400) or kept without the NUL."""
    member = await small_world.user()
    body = (part_head("file", "evil\x00.png") + PNG + b"\r\n"
            + f"--{BOUNDARY}--\r\n".encode())
    code, answer = await post(small_world, member, body)
    assert code in (201, 400), answer
    if code == 201:
        assert answer["data"][0]["originalName"] == "evil.png"


@pytest_twisted.ensureDeferred
async def test_twenty_concurrent_uploads_are_all_stored_whole(
    small_world: FilesWorld,
) -> None:
    """Twenty uploads at once (each of a different 300 kB file) all succeed, each
    stored whole under its own key with its own SHA-256."""
    import hashlib
    import os

    member = await small_world.user()
    contents = [PNG + os.urandom(300 * 1024) for _ in range(20)]
    answers = await defer.gatherResults([
        defer.Deferred.fromCoroutine(
            post(small_world, member, multipart([("file", f"{n}.png", content)])))
        for n, content in enumerate(contents)])
    assert [code for code, _ in answers] == [201] * 20, answers
    digests = {answer["data"][0]["sha256"] for _, answer in answers}
    assert digests == {hashlib.sha256(c).hexdigest() for c in contents}
    assert {p.read_bytes() for p in small_world.stored_objects()} == set(contents)
    assert len(await small_world.rows()) == 20


@pytest.mark.parametrize(("parts", "field", "message"), [
    ([("note", None, b"hi")], "note", "is not a field of an upload"),
    ([("file", "a.png", PNG), ("projectId", None, b"x")], "projectId",
     "must come before the first file part"),
    ([("projectId", None, b"not-a-uuid"), ("file", "a.png", PNG)], "projectId",
     "must be a UUID"),
    ([("projectId", None, b"00000000-0000-4000-8000-000000000000")], "file",
     "send at least one file part"),
])
@pytest_twisted.ensureDeferred
async def test_forms_that_are_not_uploads_are_400_naming_the_field(
    small_world: FilesWorld, parts: list[Any], field: str, message: str,
) -> None:
    """Unknown parts, a projectId after the files or not a UUID, and a form without a
    file are 400 VALIDATION_ERROR naming the field."""
    member = await small_world.user()
    code, answer = await post(small_world, member, multipart(parts))
    if code == 404:  # the form's project does not exist: checked before the files
        assert field == "file"
        return
    assert code == 400, answer
    assert answer["code"] == "VALIDATION_ERROR"
    assert answer["details"][0]["field"] == field
    assert message in answer["details"][0]["message"]
    await nothing_left(small_world)


@pytest_twisted.ensureDeferred
async def test_who_may_upload_where(small_world: FilesWorld) -> None:
    """No credentials: 401; a project the user may not see: 404; a project where the
    user is a viewer: 403; a read-only account without a project: 403; not a multipart
    body: 415. Nothing is stored for any of them."""
    member = await small_world.user()
    viewer_account = await small_world.user("viewer")
    stranger_project = await small_world.project()
    watched = await small_world.project({member["X-User"]: "viewer"})
    body = multipart([("file", "a.png", PNG)])
    code, answer = await post(small_world, {}, body)
    assert (code, answer["code"]) == (401, "UNAUTHENTICATED")
    for project, expected in ((stranger_project, 404), (watched, 403)):
        code, answer = await post(small_world, member, multipart(
            [("projectId", None, project.encode()), ("file", "a.png", PNG)]))
        assert code == expected, answer
    code, answer = await post(small_world, viewer_account, body)
    assert code == 403, answer
    code, answer = await post(small_world, member, b'{"file": "x"}', "application/json")
    assert (code, answer["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    await nothing_left(small_world)


@pytest.fixture
def impatient_world(database: Database, tmp_path: Path, wire: str) -> Iterator[FilesWorld]:
    """A body must arrive within 1 s plus 1 s per MB received."""
    from installsure.http import HttpSettings

    yield from serve_files(database, tmp_path, settings=HttpSettings(
        wire=wire, rate_limit_enabled=False, body_timeout=1.0, body_min_rate=1_000_000))


@pytest_twisted.ensureDeferred
async def test_a_trickling_upload_is_cut_off_by_the_body_deadline(
    impatient_world: FilesWorld,
) -> None:
    """A streamed body is held to the body deadline like any other: an upload that sends
    a few bytes and then nothing is answered 408 REQUEST_TIMEOUT and leaves nothing."""
    world = impatient_world
    member = await world.user()
    head = upload_head(world.number, member, 10 * MIB)

    def trickle() -> Iterator[bytes]:
        yield part_head("file", "slow.png") + PNG
        import time

        time.sleep(3)
        yield b"too late"

    raw, _sent = await threads.deferToThread(send_until_answered, world.number, head,
                                             trickle())
    status, _headers, body = answer_of(raw)
    assert status == 408, body
    assert body["code"] == "REQUEST_TIMEOUT"
    await nothing_left(world)


@pytest.mark.parametrize("wire", ["fast"])
@pytest_twisted.ensureDeferred
async def test_a_declared_length_over_what_an_upload_may_need_is_413_at_once(
    small_world: FilesWorld,
) -> None:
    """On the fast wire, a Content-Length over max_files × max_size (plus room for the
    parts' headers) is answered 413 before any of the body is sent."""
    member = await small_world.user()
    head = upload_head(small_world.number, member, small_world.limits.max_body + 1)
    raw, sent = await threads.deferToThread(send_until_answered, small_world.number, head,
                                            [])
    status, _headers, body = answer_of(raw)
    assert (status, body["code"], sent) == (413, "PAYLOAD_TOO_LARGE", 0)
