"""The project routes over HTTP: create, read, list, replace, change, delete."""

from __future__ import annotations

import uuid
from typing import Any

import pytest_twisted
from sqlalchemy import func, insert, select
from twisted.internet.defer import Deferred, gatherResults

from installsure.db.tables import audit_log, files, projects
from tests.http.helpers import captured_events
from tests.projects.api import ProjectsApi

FULL = {
    "name": "Harbour Tower", "description": "Twelve floors by the water", "status": "active",
    "progress": 35, "budget": 1250000.5, "startDate": "2026-03-01", "endDate": "2027-06-30",
    "contractor": "Acme Construction", "location": "Bergen",
}


@pytest_twisted.ensureDeferred
async def test_create_answers_201_with_the_project_etag_and_location(api: ProjectsApi) -> None:
    """POST creates the project with every field as sent, answers 201 with Location and
    ETag, makes the creator its owner, writes an audit row and a business event."""
    user, token = await api.user()
    with captured_events("installsure.events") as logged:
        created = await api.create(token, **FULL)
    project = created.data
    assert {k: project[k] for k in FULL} == FULL
    assert project["createdBy"] == user.id
    assert project["fileCount"] == 0
    assert project["createdAt"].endswith("Z")
    assert project["updatedAt"] == project["createdAt"]
    assert created.header("Location") == f"/api/projects/{project['id']}"
    assert created.header("ETag") == f'"{project["id"]}.1"'
    members = await api.call("GET", f"/api/projects/{project['id']}/members", token)
    assert [(m["userId"], m["role"]) for m in members.data] == [(user.id, "owner")]
    activity = await api.call("GET", f"/api/projects/{project['id']}/activity", token)
    assert [e["action"] for e in activity.data] == ["project.created"]
    assert activity.data[0]["changes"]["name"] == [None, "Harbour Tower"]
    assert [e["event"] for e in logged] == ["project.created"]
    await api.signal({"projectId": project["id"], "userId": user.id, "change": "added",
                      "role": "owner"})


@pytest_twisted.ensureDeferred
async def test_defaults_of_a_minimal_project(api: ProjectsApi) -> None:
    """Only a name: status planning, progress 0, the optional fields null; the name is
    stored without surrounding white space."""
    _user, token = await api.user()
    project = (await api.create(token, name="  Shed  ")).data
    assert (project["name"], project["status"], project["progress"]) == ("Shed", "planning", 0)
    assert [project[k] for k in ("description", "budget", "startDate", "endDate",
                                 "contractor", "location")] == [None] * 6


@pytest_twisted.ensureDeferred
async def test_validation_lists_every_bad_field(api: ProjectsApi) -> None:
    """One request with eight bad fields gets one 400 naming all eight (the end date
    before the start date among them); another names the other kinds of mistakes."""
    _user, token = await api.user()
    bad = await api.call("POST", "/api/projects", token, {
        "name": "   ", "description": "x" * 5001, "status": "finished", "progress": 101,
        "budget": 12.345, "startDate": "2026-05-02", "endDate": "2026-05-01",
        "contractor": "c" * 256, "location": "Oslo\u0000",
    })
    assert bad.status == 400
    assert bad.body["code"] == "VALIDATION_ERROR"
    assert bad.fields() == ["budget", "contractor", "description", "endDate", "location",
                            "name", "progress", "status"]
    more = await api.call("POST", "/api/projects", token, {
        "budget": -1, "startDate": "next week", "progress": 1.5, "endDate": "2026-02-30",
    })
    assert more.status == 400
    assert more.fields() == ["budget", "endDate", "name", "progress", "startDate"]
    too_long = await api.call("POST", "/api/projects", token, {"name": "n" * 256})
    assert too_long.fields() == ["name"]
    assert await api.database.run(
        lambda c: c.execute(select(func.count()).select_from(projects)).scalar_one()) == 0


@pytest_twisted.ensureDeferred
async def test_budget_takes_two_decimals_and_large_amounts(api: ProjectsApi) -> None:
    """Budgets with up to two decimals up to 999,999,999,999.99 are kept exactly."""
    _user, token = await api.user()
    for n, budget in enumerate([0, 0.1, 19.99, 999_999_999_999.99]):
        project = (await api.create(token, name=f"B{n}", budget=budget)).data
        assert project["budget"] == budget
    over = await api.call("POST", "/api/projects", token, {"name": "B9", "budget": 1e12})
    assert over.fields() == ["budget"]


@pytest_twisted.ensureDeferred
async def test_names_are_unique_ignoring_case(api: ProjectsApi) -> None:
    """A second "harbour tower" is 409 CONFLICT; renaming another project to it too."""
    _user, token = await api.user()
    await api.create(token, name="Harbour Tower")
    clash = await api.call("POST", "/api/projects", token, {"name": "HARBOUR tower"})
    assert (clash.status, clash.body["code"]) == (409, "CONFLICT")
    assert "exists already" in clash.body["error"]
    other = (await api.create(token, name="Depot")).data
    renamed = await api.call("PATCH", f"/api/projects/{other['id']}", token,
                             {"name": "harbour TOWER"})
    assert renamed.status == 409


@pytest_twisted.ensureDeferred
async def test_concurrent_creates_of_one_name_give_one_project(api: ProjectsApi) -> None:
    """Six concurrent creates of the same name in different cases: one 201, five 409,
    one row."""
    _user, token = await api.user()
    names = ["Twin", "TWIN", "twin", "tWIN", "Twin", "twiN"]
    answers = await gatherResults([
        Deferred.fromCoroutine(api.call("POST", "/api/projects", token, {"name": n}))
        for n in names
    ])
    assert sorted(a.status for a in answers) == [201, 409, 409, 409, 409, 409]
    assert await api.database.run(
        lambda c: c.execute(select(func.count()).select_from(projects)).scalar_one()) == 1


@pytest_twisted.ensureDeferred
async def test_list_filters_searches_sorts_and_pages(api: ProjectsApi) -> None:
    """status and q filter (q case-insensitively over name, description, contractor,
    location), sort orders, page/perPage cut, meta carries the total."""
    _user, token = await api.user()
    specs = [
        {"name": "Alpha", "status": "active", "contractor": "NORDBAU"},
        {"name": "Bravo", "status": "planning", "description": "near the Fjord"},
        {"name": "Charlie", "status": "active", "location": "Ålesund"},
        {"name": "Delta", "status": "completed"},
        {"name": "Echo", "status": "active"},
    ]
    for spec in specs:
        await api.create(token, **spec)

    async def listed(query: str) -> tuple[list[str], dict[str, Any]]:
        answer = await api.call("GET", "/api/projects" + query, token)
        assert answer.status == 200, answer.body
        return [p["name"] for p in answer.data], answer.body["meta"]

    assert await listed("?sort=name") == (["Alpha", "Bravo", "Charlie", "Delta", "Echo"],
                                          {"page": 1, "perPage": 20, "total": 5})
    assert (await listed("?sort=-name"))[0] == ["Echo", "Delta", "Charlie", "Bravo", "Alpha"]
    assert (await listed(""))[0] == ["Echo", "Delta", "Charlie", "Bravo", "Alpha"]
    assert (await listed("?sort=createdAt&page=2&perPage=2")) == (
        ["Charlie", "Delta"], {"page": 2, "perPage": 2, "total": 5})
    assert (await listed("?sort=name&page=9&perPage=2")) == (
        [], {"page": 9, "perPage": 2, "total": 5})
    assert (await listed("?status=active&sort=name"))[0] == ["Alpha", "Charlie", "Echo"]
    assert (await listed("?q=nordbau"))[0] == ["Alpha"]
    assert (await listed("?q=FJORD"))[0] == ["Bravo"]
    assert (await listed("?q=%C3%A5lesund"))[0] == ["Charlie"]  # "ålesund"
    assert (await listed("?q=ch&status=active"))[0] == ["Echo", "Charlie"]
    bad = await api.call("GET", "/api/projects?sort=size&perPage=500&status=x", token)
    assert bad.status == 400
    assert bad.fields() == ["perPage", "sort", "status"]


@pytest_twisted.ensureDeferred
async def test_list_shows_only_visible_projects(api: ProjectsApi) -> None:
    """Members see the projects they belong to; managers and admins see all."""
    _alice, alice = await api.user()
    _bob, bob = await api.user()
    _manager, manager = await api.user("manager")
    _viewer, viewer = await api.user("viewer")
    await api.create(alice, name="Alice's")
    await api.create(bob, name="Bob's")
    for token, expected in ((alice, ["Alice's"]), (bob, ["Bob's"]), (viewer, []),
                            (manager, ["Alice's", "Bob's"])):
        answer = await api.call("GET", "/api/projects?sort=name", token)
        assert [p["name"] for p in answer.data] == expected
        assert answer.body["meta"]["total"] == len(expected)


@pytest_twisted.ensureDeferred
async def test_get_is_404_for_an_unknown_or_invisible_project(api: ProjectsApi) -> None:
    """Another member's project and a project that does not exist answer the same 404."""
    _alice, alice = await api.user()
    _bob, bob = await api.user()
    project = (await api.create(alice, name="Private")).data
    hidden = await api.call("GET", f"/api/projects/{project['id']}", bob)
    missing = await api.call("GET", f"/api/projects/{uuid.uuid4()}", bob)
    assert hidden.status == missing.status == 404
    assert hidden.body["error"] == missing.body["error"]
    own = await api.call("GET", f"/api/projects/{project['id']}", alice)
    assert own.status == 200
    assert own.header("ETag") == f'"{project["id"]}.1"'


@pytest_twisted.ensureDeferred
async def test_project_roles_decide_edits_and_deletes(api: ProjectsApi) -> None:
    """A project viewer may read but not change (403); an editor may change but not
    delete; a manager may change any project but not delete it; a global viewer who is
    the project's owner still changes nothing."""
    _owner, owner_token = await api.user()
    editor, editor_token = await api.user()
    reader, reader_token = await api.user()
    _manager, manager_token = await api.user("manager")
    read_only, read_only_token = await api.user("viewer")
    pid = (await api.create(owner_token, name="Roles")).data["id"]
    for user, role in ((editor, "editor"), (reader, "viewer"), (read_only, "owner")):
        added = await api.call("POST", f"/api/projects/{pid}/members", owner_token,
                               {"userId": user.id, "role": role})
        assert added.status == 201, added.body
    path = f"/api/projects/{pid}"
    assert (await api.call("GET", path, reader_token)).status == 200
    assert (await api.call("PATCH", path, reader_token, {"progress": 5})).status == 403
    assert (await api.call("PATCH", path, editor_token, {"progress": 6})).status == 200
    assert (await api.call("DELETE", path, editor_token)).status == 403
    assert (await api.call("PATCH", path, manager_token, {"progress": 7})).status == 200
    assert (await api.call("DELETE", path, manager_token)).status == 403
    assert (await api.call("PATCH", path, read_only_token, {"progress": 8})).status == 403
    assert (await api.call("DELETE", path, read_only_token)).status == 403
    forbidden = await api.call("PATCH", path, reader_token, {"progress": 5})
    assert forbidden.body["code"] == "FORBIDDEN"
    assert (await api.call("DELETE", path, owner_token)).status == 200


@pytest_twisted.ensureDeferred
async def test_only_some_roles_create_and_the_operator_owns_nothing(api: ProjectsApi) -> None:
    """Global viewers cannot create projects; neither can the service principal (a
    project needs an owner)."""
    from tests.projects.helpers import OPERATOR_SECRET

    _viewer, viewer = await api.user("viewer")
    for token in (viewer, OPERATOR_SECRET):
        refused = await api.call("POST", "/api/projects", token, {"name": "Nope"})
        assert (refused.status, refused.body["code"]) == (403, "FORBIDDEN")


@pytest_twisted.ensureDeferred
async def test_patch_changes_only_the_fields_sent(api: ProjectsApi) -> None:
    """PATCH changes what it names, null clears an optional field, null for a required
    one is refused, dates are checked against the stored ones, an unchanged body writes
    nothing; each change is an audit row and an ``updated`` event with the changes."""
    _user, token = await api.user()
    project = (await api.create(token, **FULL)).data
    path = f"/api/projects/{project['id']}"
    changed = await api.call("PATCH", path, token, {"progress": 80, "description": None})
    assert changed.status == 200
    after = changed.data
    assert (after["progress"], after["description"], after["name"]) == (80, None, FULL["name"])
    assert after["updatedAt"] > project["updatedAt"]
    assert changed.header("ETag") == f'"{project["id"]}.2"'
    topic, payload = api.events.events[-1]
    assert topic == f"installsure.project.{project['id']}.updated"
    assert payload["changes"] == {"progress": [35, 80],
                                  "description": [FULL["description"], None]}
    assert (payload["type"], payload["version"], payload["project"]["progress"]) == (
        "project.updated", 2, 80)
    nulls = await api.call("PATCH", path, token, {"name": None, "status": None,
                                                  "progress": None})
    assert nulls.fields() == ["name", "progress", "status"]
    early_end = await api.call("PATCH", path, token, {"endDate": "2026-01-01"})
    assert early_end.fields() == ["endDate"]
    late_start = await api.call("PATCH", path, token, {"startDate": "2028-01-01"})
    assert late_start.fields() == ["startDate"]
    events_before = len(api.events.events)
    same = await api.call("PATCH", path, token, {"progress": 80})
    assert same.status == 200
    assert same.header("ETag") == f'"{project["id"]}.2"'
    assert len(api.events.events) == events_before
    actions = await api.call("GET", path + "/activity", token)
    assert [e["action"] for e in actions.data] == ["project.updated", "project.created"]


@pytest_twisted.ensureDeferred
async def test_put_replaces_every_field(api: ProjectsApi) -> None:
    """PUT sets every field: those left out go back to their defaults."""
    _user, token = await api.user()
    project = (await api.create(token, **FULL)).data
    replaced = await api.call("PUT", f"/api/projects/{project['id']}", token,
                              {"name": "Harbour Tower II", "progress": 10})
    assert replaced.status == 200, replaced.body
    data = replaced.data
    assert (data["name"], data["progress"], data["status"], data["budget"],
            data["location"]) == ("Harbour Tower II", 10, "planning", None, None)
    missing_name = await api.call("PUT", f"/api/projects/{project['id']}", token,
                                  {"progress": 10})
    assert missing_name.fields() == ["name"]


@pytest_twisted.ensureDeferred
async def test_delete_removes_the_project_its_rows_and_tells_the_hook(
    api: ProjectsApi,
) -> None:
    """DELETE answers {id}; members and file rows go with it, the files hook gets the
    storage keys, a ``deleted`` event and a ``deleted`` membership signal go out, the
    audit row stays; afterwards the project is 404."""
    owner, token = await api.user()
    pid = (await api.create(token, name="Doomed")).data["id"]
    await api.database.run(lambda c: c.execute(insert(files).values(
        id=str(uuid.uuid4()), project_id=pid, storage_key="stored/abc", original_name="a.pdf",
        mime_type="application/pdf", extension="pdf", size=3, sha256="0" * 64,
        uploaded_by=owner.id,
    )))
    assert (await api.call("GET", f"/api/projects/{pid}", token)).data["fileCount"] == 1
    deleted = await api.call("DELETE", f"/api/projects/{pid}", token)
    assert (deleted.status, deleted.body) == (200, {"success": True, "data": {"id": pid}})
    assert [(p, [f.storage_key for f in gone]) for p, gone in api.deleted_files] == [
        (pid, ["stored/abc"])]
    assert api.events.topics()[-1] == f"installsure.project.{pid}.deleted"
    assert (await api.call("GET", f"/api/projects/{pid}", token)).status == 404
    assert (await api.call("DELETE", f"/api/projects/{pid}", token)).status == 404

    def leftovers(c: Any) -> tuple[int, list[str]]:
        return (
            c.execute(select(func.count()).select_from(files)).scalar_one(),
            list(c.execute(select(audit_log.c.action).where(audit_log.c.project_id == pid)
                           .order_by(audit_log.c.id)).scalars()),
        )

    assert await api.database.run(leftovers) == (0, ["project.created", "project.deleted"])
    await api.signal({"projectId": pid, "userId": None, "change": "deleted", "role": None})


@pytest_twisted.ensureDeferred
async def test_database_away_is_503(api: ProjectsApi) -> None:
    """With the database service stopped the routes answer 503 UNAVAILABLE with
    Retry-After, not a 500."""
    _user, token = await api.user()
    await api.database.stopService()
    answer = await api.call("GET", "/api/projects", token)
    assert (answer.status, answer.body["code"]) == (503, "UNAVAILABLE")
    assert answer.header("Retry-After") == "5"
