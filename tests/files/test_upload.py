"""Uploads over a real socket, on both wires, on SQLite and PostgreSQL: what is stored,
recorded and announced, and what is refused."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs
import pytest_twisted
import treq

from installsure.db.tables import audit_log
from tests.files.helpers import CONTENT_TYPE, IFC, PDF, PNG, multipart
from tests.files.world import FilesWorld


async def post(world: FilesWorld, headers: dict[str, str], body: bytes,
               query: str = "") -> tuple[int, Any]:
    response = await treq.post(
        world.base + "/api/files/upload" + query, data=body,
        headers={**headers, "Content-Type": CONTENT_TYPE}, persistent=False)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_an_upload_is_stored_recorded_audited_and_announced(world: FilesWorld) -> None:
    """Two files into a project the uploader edits: 201 with both records (names,
    types, sizes and SHA-256 of what was sent), the bytes stored whole, one row and one
    audit row each, and the project's file event for each."""
    editor = await world.user()
    project = await world.project({editor["X-User"]: "editor"})
    body = multipart([("projectId", None, project.encode()),
                      ("file", "Ground floor.png", PNG), ("file", "model.ifc", IFC)])
    code, answer = await post(world, editor, body)
    assert code == 201, answer
    records = answer["data"]
    assert [(r["originalName"], r["extension"], r["mimeType"], r["size"]) for r in records] == [
        ("Ground floor.png", "png", "image/png", len(PNG)),
        ("model.ifc", "ifc", "application/x-step", len(IFC)),
    ]
    assert [r["sha256"] for r in records] == [hashlib.sha256(PNG).hexdigest(),
                                              hashlib.sha256(IFC).hexdigest()]
    assert {r["status"] for r in records} == {"uploaded"}
    assert {r["projectId"] for r in records} == {project}
    assert {r["uploadedBy"] for r in records} == {editor["X-User"]}
    assert all(r["createdAt"].endswith("Z") and r["thumbnailUrl"] is None for r in records)
    stored = {p.read_bytes() for p in world.stored_objects()}
    assert stored == {PNG, IFC}
    assert len(await world.rows()) == 2
    audits = await world.rows(audit_log)
    assert sorted(a.action for a in audits) == ["file.uploaded", "file.uploaded"]
    assert {a.actor_id for a in audits} == {editor["X-User"]}
    topics = [(topic, payload["action"], payload["fileId"]) for topic, payload in
              world.events.events]
    assert topics == [(f"installsure.project.{project}.file", "added", r["id"])
                      for r in records]


@pytest_twisted.ensureDeferred
async def test_audit_rows_name_the_uploader_as_its_account_does(
    fast_world: FilesWorld,
) -> None:
    """A verified access token carries no name: the audit rows of an upload and of a
    delete still name the user by its account's name (never by its id), as the rows
    of project and account changes do."""
    world = fast_world
    headers = await world.user(name="Grace Hopper")
    token = headers["Authorization"].removeprefix("Bearer ")
    world.authenticator.principals[token] = attrs.evolve(
        world.authenticator.principals[token], name=None)
    code, answer = await post(world, headers, multipart([("file", "a.pdf", PDF)]))
    assert code == 201, answer
    response = await treq.delete(f"{world.base}/api/files/{answer['data'][0]['id']}",
                                 headers=headers, persistent=False)
    assert response.code == 200
    audits = await world.rows(audit_log)
    assert sorted((a.action, a.actor_id, a.actor_name) for a in audits) == [
        ("file.deleted", headers["X-User"], "Grace Hopper"),
        ("file.uploaded", headers["X-User"], "Grace Hopper"),
    ]


@pytest_twisted.ensureDeferred
async def test_the_project_may_come_in_the_query_and_files_may_have_none(
    world: FilesWorld,
) -> None:
    """``?projectId=`` names the project as well as the form field does; an upload
    without a project belongs to no project, and publishes no project event."""
    member = await world.user()
    project = await world.project({member["X-User"]: "owner"})
    code, answer = await post(world, member, multipart([("file", "a.pdf", PDF)]),
                              f"?projectId={project}")
    assert code == 201, answer
    assert answer["data"][0]["projectId"] == project
    code, answer = await post(world, member, multipart([("file", "b.pdf", PDF)]))
    assert code == 201, answer
    assert answer["data"][0]["projectId"] is None
    assert len(world.events.events) == 1


@pytest_twisted.ensureDeferred
async def test_unicode_and_rfc_8187_names_are_kept_for_display(world: FilesWorld) -> None:
    """A UTF-8 file name is kept as sent (NFC), and ``filename*`` wins over ``filename``."""
    member = await world.user()
    from tests.files.helpers import BOUNDARY, part_head

    body = (part_head("file", "Übersicht – Grundriß.pdf") + PDF + b"\r\n"
            + part_head("file", "fallback.pdf", extended="%E5%B9%B3%E9%9D%A2%E5%9B%B3.pdf")
            + PDF + b"\r\n" + f"--{BOUNDARY}--\r\n".encode())
    code, answer = await post(world, member, body)
    assert code == 201, answer
    assert [r["originalName"] for r in answer["data"]] == ["Übersicht – Grundriß.pdf",
                                                            "平面図.pdf"]
