"""Listing, stats, records and deletion of files, with who may see and change what,
over a real socket on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from sqlalchemy import event, update
from twisted.internet import defer, reactor, task
from twisted.internet.defer import DeferredList

from installsure.db.projects import delete_project
from installsure.db.tables import audit_log, project_members
from tests.files.helpers import CONTENT_TYPE, IFC, PDF, PNG, multipart
from tests.files.world import FilesWorld


async def call(world: FilesWorld, method: str, path: str, headers: dict[str, str],
               body: bytes | None = None) -> tuple[int, Any]:
    extra = {"Content-Type": CONTENT_TYPE} if body is not None else {}
    response = await treq.request(method, world.base + path, data=body,
                                  headers={**headers, **extra}, persistent=False)
    content = await response.content()
    is_json = (response.headers.getRawHeaders("Content-Type") or [""])[0].startswith(
        "application/json")
    return response.code, json.loads(content) if is_json else content


async def upload(world: FilesWorld, headers: dict[str, str], parts: list[Any],
                 project: str | None = None) -> list[dict[str, Any]]:
    fields = [("projectId", None, project.encode())] if project else []
    code, answer = await call(world, "POST", "/api/files/upload", headers,
                              multipart(fields + parts))
    assert code == 201, json.dumps(answer)
    records: list[dict[str, Any]] = answer["data"]
    return records


@pytest_twisted.ensureDeferred
async def test_listing_filters_sorts_pages_and_counts(fast_world: FilesWorld) -> None:
    """GET /api/files lists what the caller may see, filtered by projectId, type and
    status, sorted, paged, with the total of all matching files."""
    world = fast_world
    owner = await world.user()
    project = await world.project({owner["X-User"]: "owner"})
    other = await world.project({owner["X-User"]: "editor"})
    await upload(world, owner, [("file", "b.png", PNG), ("file", "a.pdf", PDF),
                                ("file", "c.ifc", IFC)], project)
    await upload(world, owner, [("file", "d.png", PNG)], other)
    code, answer = await call(world, "GET", f"/api/files?projectId={project}", owner)
    assert code == 200, answer
    assert [f["originalName"] for f in answer["data"]] == ["c.ifc", "a.pdf", "b.png"]
    assert answer["meta"] == {"page": 1, "perPage": 20, "total": 3}
    code, answer = await call(world, "GET", "/api/files?type=png&sort=originalName", owner)
    assert [f["originalName"] for f in answer["data"]] == ["b.png", "d.png"]
    code, answer = await call(world, "GET", "/api/files?sort=-size&perPage=2&page=2", owner)
    assert answer["meta"] == {"page": 2, "perPage": 2, "total": 4}
    assert len(answer["data"]) == 2
    code, answer = await call(world, "GET", "/api/files?status=processed", owner)
    assert (code, answer["data"], answer["meta"]["total"]) == (200, [], 0)
    code, answer = await call(world, "GET", "/api/files?type=exe&perPage=0", owner)
    assert code == 400
    assert {d["field"] for d in answer["details"]} == {"type", "perPage"}


@pytest_twisted.ensureDeferred
async def test_who_sees_which_files(world: FilesWorld) -> None:
    """Members see their projects' files; others get 404 for them and do not find them
    in lists; a file without a project is seen by its uploader and by admins only
    (managers see every project's files, not others' unassigned ones)."""
    owner = await world.user()
    stranger = await world.user()
    manager = await world.user("manager")
    admin = await world.user("admin")
    project = await world.project({owner["X-User"]: "owner"})
    [in_project] = await upload(world, owner, [("file", "p.png", PNG)], project)
    [unassigned] = await upload(world, owner, [("file", "u.png", PNG)])
    for who, sees in ((owner, {in_project["id"], unassigned["id"]}),
                      (stranger, set()),
                      (manager, {in_project["id"]}),
                      (admin, {in_project["id"], unassigned["id"]})):
        code, answer = await call(world, "GET", "/api/files", who)
        assert {f["id"] for f in answer["data"]} == sees
        for record in (in_project, unassigned):
            code, answer = await call(world, "GET", f"/api/files/{record['id']}", who)
            assert code == (200 if record["id"] in sees else 404), answer
            code, _ = await call(world, "GET", f"/api/files/{record['id']}/download", who)
            assert code == (200 if record["id"] in sees else 404)
    code, answer = await call(world, "GET", f"/api/files?projectId={project}", stranger)
    assert code == 404
    code, answer = await call(world, "GET", "/api/files/not-a-uuid", owner)
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_stats_count_what_the_caller_sees(fast_world: FilesWorld) -> None:
    """GET /api/files/stats: totals, sizes, counts by type and status, the newest files
    and the number waiting for processing, for one project or all visible ones."""
    world = fast_world
    owner = await world.user()
    project = await world.project({owner["X-User"]: "owner"})
    await upload(world, owner, [("file", "a.png", PNG), ("file", "b.png", PNG),
                                ("file", "c.pdf", PDF)], project)
    await upload(world, owner, [("file", "d.ifc", IFC)])
    code, answer = await call(world, "GET", f"/api/files/stats?projectId={project}", owner)
    assert code == 200, answer
    stats = answer["data"]
    assert stats["total"] == stats["totalFiles"] == 3
    assert stats["totalSize"] == 2 * len(PNG) + len(PDF)
    assert stats["byType"] == {"png": 2, "pdf": 1}
    assert stats["byStatus"] == {"uploaded": 3}
    assert stats["processingQueue"] == 3
    assert [f["originalName"] for f in stats["recentUploads"]] == ["c.pdf", "b.png", "a.png"]
    code, answer = await call(world, "GET", "/api/files/stats", owner)
    assert answer["data"]["totalFiles"] == 4
    stranger = await world.user()
    code, answer = await call(world, "GET", "/api/files/stats", stranger)
    assert (answer["data"]["totalFiles"], answer["data"]["byType"]) == (0, {})


@pytest_twisted.ensureDeferred
async def test_deleting_removes_the_record_and_the_bytes(world: FilesWorld) -> None:
    """DELETE by an editor of the project removes the row and the stored bytes, writes
    an audit row and publishes the deleted event; then the file is 404."""
    owner = await world.user()
    editor = await world.user()
    project = await world.project({owner["X-User"]: "owner", editor["X-User"]: "editor"})
    [record] = await upload(world, owner, [("file", "p.png", PNG)], project)
    code, answer = await call(world, "DELETE", f"/api/files/{record['id']}", editor)
    assert (code, answer["data"]) == (200, {"id": record["id"]})
    assert await world.rows() == []
    for _ in range(100):
        if not world.stored_objects():
            break
        from twisted.internet import reactor, task

        await task.deferLater(reactor, 0.02, lambda: None)
    assert world.stored_objects() == []
    actions = sorted(a.action for a in await world.rows(audit_log))
    assert actions == ["file.deleted", "file.uploaded"]
    assert world.events.events[-1][1]["action"] == "deleted"
    code, _ = await call(world, "GET", f"/api/files/{record['id']}", owner)
    assert code == 404
    code, _ = await call(world, "DELETE", f"/api/files/{record['id']}", owner)
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_who_may_delete(world: FilesWorld) -> None:
    """A project viewer may not delete others' files (403) but may delete a file it
    uploaded itself; a stranger gets 404; another user's unassigned file is 404 to a
    member and deletable by an admin."""
    owner = await world.user()
    viewer = await world.user()
    stranger = await world.user()
    admin = await world.user("admin")
    project = await world.project({owner["X-User"]: "owner", viewer["X-User"]: "editor"})
    [theirs] = await upload(world, owner, [("file", "o.png", PNG)], project)
    [mine] = await upload(world, viewer, [("file", "v.png", PNG)], project)
    await world.database.run(lambda c: c.execute(
        update(project_members).where(project_members.c.user_id == viewer["X-User"])
        .values(role="viewer")))
    code, answer = await call(world, "DELETE", f"/api/files/{theirs['id']}", viewer)
    assert (code, answer["code"]) == (403, "FORBIDDEN")
    code, _ = await call(world, "DELETE", f"/api/files/{mine['id']}", viewer)
    assert code == 200
    code, _ = await call(world, "DELETE", f"/api/files/{theirs['id']}", stranger)
    assert code == 404
    [unassigned] = await upload(world, owner, [("file", "u.png", PNG)])
    code, _ = await call(world, "DELETE", f"/api/files/{unassigned['id']}", stranger)
    assert code == 404
    code, _ = await call(world, "DELETE", f"/api/files/{unassigned['id']}", admin)
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_deleting_a_project_removes_its_files_bytes(fast_world: FilesWorld) -> None:
    """When a project is deleted its file rows go with it (cascade) and the projects
    routes' hook, FileLibrary.project_files_deleted, removes their stored bytes; files
    of other projects stay."""
    world = fast_world
    owner = await world.user()
    doomed = await world.project({owner["X-User"]: "owner"})
    kept = await world.project({owner["X-User"]: "owner"})
    await upload(world, owner, [("file", "a.png", PNG), ("file", "b.pdf", PDF)], doomed)
    [survivor] = await upload(world, owner, [("file", "c.png", PNG)], kept)
    gone = await world.database.run(lambda c: delete_project(c, doomed, expected_version=1))
    assert len(gone) == 2
    world.library.project_files_deleted(doomed, gone)
    for _ in range(250):
        if len(world.stored_objects()) == 1:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    assert [p.name for p in world.stored_objects()] == [survivor["id"]]
    assert [row.id for row in await world.rows()] == [survivor["id"]]


@pytest_twisted.ensureDeferred
async def test_file_routes_read_the_file_and_the_callers_role_in_one_query(
    fast_world: FilesWorld,
) -> None:
    """GET, download, thumbnail and DELETE of a file, by a member of its project who is
    not an admin, read the file row together with the caller's project role in one
    SELECT (the delete then only deletes and audits): counted on the real engine."""
    world = fast_world
    editor = await world.user()
    project = await world.project({editor["X-User"]: "editor"})
    [record] = await upload(world, editor, [("file", "p.png", PNG)], project)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        first = statement.lstrip().split(None, 1)[0].upper()
        if first in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            statements.append(first)

    event.listen(world.database.engine, "before_cursor_execute", seen)
    try:
        path = f"/api/files/{record['id']}"
        for method, suffix, status in (("GET", "", 200), ("GET", "/download", 200),
                                       ("GET", "/thumbnail", 404), ("DELETE", "", 200)):
            statements.clear()
            code, _ = await call(world, method, path + suffix, editor)
            assert code == status, (method, suffix)
            expected = ["SELECT", "DELETE", "INSERT"] if method == "DELETE" else ["SELECT"]
            assert statements == expected, (method, suffix)
    finally:
        event.remove(world.database.engine, "before_cursor_execute", seen)


@pytest_twisted.ensureDeferred
async def test_two_deletes_of_one_file_at_once(world: FilesWorld) -> None:
    """Two owners deleting the same file at the same moment: one gets 200, the other
    404, and the audit log has one ``file.deleted``."""
    first = await world.user()
    second = await world.user()
    project = await world.project({first["X-User"]: "owner", second["X-User"]: "owner"})
    [record] = await upload(world, first, [("file", "p.png", PNG)], project)
    path = f"/api/files/{record['id']}"
    results = await DeferredList(
        [defer.ensureDeferred(call(world, "DELETE", path, who)) for who in (first, second)],
        fireOnOneErrback=True, consumeErrors=True)
    assert sorted(code for _ok, (code, _body) in results) == [200, 404]
    deleted = [a for a in await world.rows(audit_log) if a.action == "file.deleted"]
    assert len(deleted) == 1
