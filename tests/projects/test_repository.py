"""The projects, members and audit repositories on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import Connection, func, insert, select
from twisted.internet.defer import DeferredList

from installsure.auth.operator import OPERATOR
from installsure.auth.principal import Principal
from installsure.db import Database, audit, members
from installsure.db import projects as repo
from installsure.db.tables import files, project_members
from tests.projects.helpers import add_membership, insert_project, insert_user

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def run(database: Database, fn: Any) -> Any:
    return await database.run(fn)


@pytest_twisted.ensureDeferred
async def test_create_and_read_back_every_field(database: Database) -> None:
    """A created project reads back with every field, version 1, no files, and its
    creator as owner."""

    def work(c: Connection) -> tuple[repo.ProjectRecord, str | None]:
        owner = insert_user(c)
        record = repo.create_project(c, str(uuid.uuid4()), {
            "name": "Tower A", "description": "Twelve floors", "status": "active",
            "progress": 40, "budget": Decimal("1234567.89"), "start_date": date(2026, 1, 1),
            "end_date": date(2026, 12, 31), "contractor": "Acme", "location": "Oslo",
        }, owner_id=owner.id, now=NOW)
        return record, repo.role_of(c, record.id, owner.id)

    record, role = await run(database, work)
    assert (record.name, record.description, record.status, record.progress) == (
        "Tower A", "Twelve floors", "active", 40)
    assert record.budget == Decimal("1234567.89")
    assert (record.start_date, record.end_date) == (date(2026, 1, 1), date(2026, 12, 31))
    assert (record.contractor, record.location, record.version, record.file_count) == (
        "Acme", "Oslo", 1, 0)
    assert record.created_at == NOW == record.updated_at
    assert role == "owner"


@pytest_twisted.ensureDeferred
async def test_names_are_unique_case_insensitively(database: Database) -> None:
    """"TOWER", "tower" and the full-width "ＴＯＷＥＲ" are the same name as "Tower"."""

    def first(c: Connection) -> str:
        return insert_project(c, insert_user(c), name="Tower")

    await run(database, first)
    for clash in ("TOWER", "tower", "ＴＯＷＥＲ"):
        with pytest.raises(repo.ProjectNameTaken):
            await run(database, lambda c, n=clash: insert_project(c, None, name=n))
    count = await run(database, lambda c: c.execute(select(func.count()).select_from(
        repo.projects)).scalar_one())
    assert count == 1


@pytest.mark.postgres
@pytest_twisted.ensureDeferred
async def test_a_create_racing_past_the_name_check_is_refused(
    make_database: Any, postgres_url: str,
) -> None:
    """Two transactions that both saw the name free (the check passed in each before
    either inserted) still give one row: the unique index refuses the second, and it is
    reported as ProjectNameTaken rather than a database error."""
    database = make_database(postgres_url)
    await database.started()
    barrier = threading.Barrier(2, timeout=10)

    def create(c: Connection, name: str) -> str:
        free = not repo._name_taken(c, repo.fold_name(name))
        barrier.wait()  # both have checked before either inserts
        assert free
        return insert_project(c, None, name=name)

    results = await DeferredList(
        [database.run(lambda c: create(c, "Bridge")), database.run(lambda c: create(c, "BRIDGE"))],
        consumeErrors=True,
    )
    outcomes = sorted("ok" if ok else type(value.value).__name__ for ok, value in results)
    assert outcomes == ["ProjectNameTaken", "ok"]


@pytest_twisted.ensureDeferred
async def test_update_checks_the_version_in_the_statement(database: Database) -> None:
    """An update at the current version bumps it; at an old version it is refused with
    the current version; an unknown id is ProjectNotFound; a name clash is refused."""
    project_id = await run(database, lambda c: insert_project(c, None, name="One"))
    await run(database, lambda c: insert_project(c, None, name="Two"))
    later = NOW + timedelta(minutes=1)
    updated = await run(database, lambda c: repo.update_project(
        c, project_id, {"progress": 50}, expected_version=1, now=later))
    assert (updated.progress, updated.version, updated.updated_at) == (50, 2, later)
    with pytest.raises(repo.ProjectVersionMismatch) as stale:
        await run(database, lambda c: repo.update_project(
            c, project_id, {"progress": 60}, expected_version=1, now=later))
    assert stale.value.current_version == 2
    with pytest.raises(repo.ProjectNotFound):
        await run(database, lambda c: repo.update_project(
            c, str(uuid.uuid4()), {"progress": 60}, expected_version=1, now=later))
    with pytest.raises(repo.ProjectNameTaken):
        await run(database, lambda c: repo.update_project(
            c, project_id, {"name": "two"}, expected_version=2, now=later))
    # Renaming to its own name in another case is not a clash with itself.
    renamed = await run(database, lambda c: repo.update_project(
        c, project_id, {"name": "ONE"}, expected_version=2, now=later))
    assert (renamed.name, renamed.version) == ("ONE", 3)


@pytest_twisted.ensureDeferred
async def test_list_filters_search_sort_and_pages(database: Database) -> None:
    """Status filter, case-insensitive search over name/description/contractor/location
    (Unicode too, and % and _ taken literally), sorting with totals and pages, and
    member-only visibility."""

    def seed(c: Connection) -> dict[str, Any]:
        alice, bob = insert_user(c), insert_user(c)
        ids = {}
        specs = [
            ("Ärztehaus", {"status": "active", "location": "Zürich"}),
            ("Bridge", {"status": "planning", "contractor": "ÖSTERREICH Bau"}),
            ("Canal 100%", {"status": "active", "description": "water_works"}),
            ("Depot", {"status": "completed"}),
        ]
        for offset, (name, values) in enumerate(specs):
            pid = str(uuid.uuid4())
            repo.create_project(c, pid, {"name": name, **values}, owner_id=alice.id,
                                now=NOW + timedelta(seconds=offset))
            ids[name] = pid
        add_membership(c, ids["Bridge"], bob, "viewer")
        return {"ids": ids, "alice": alice.id, "bob": bob.id}

    world = await run(database, seed)

    async def names(**kw: Any) -> tuple[list[str], int]:
        kw.setdefault("member_id", None)
        rows, total = await run(database, lambda c: repo.list_projects(c, **kw))
        return [r.name for r in rows], total

    # Where "Ä" sorts depends on the database's collation; the ASCII names do not.
    by_name, total = await names(sort="name")
    assert total == 4
    assert [n for n in by_name if n.isascii()] == ["Bridge", "Canal 100%", "Depot"]
    by_name_desc, _ = await names(sort="-name")
    assert by_name_desc == list(reversed(by_name))
    assert await names(sort="-createdAt") == (["Depot", "Canal 100%", "Bridge", "Ärztehaus"], 4)
    assert await names(sort="createdAt", page=2, per_page=3) == (["Depot"], 4)
    assert await names(status="active", sort="createdAt") == (["Ärztehaus", "Canal 100%"], 2)
    assert await names(q="ärzte") == (["Ärztehaus"], 1)
    assert await names(q="ZÜRICH") == (["Ärztehaus"], 1)
    assert await names(q="österreich") == (["Bridge"], 1)
    assert await names(q="100%") == (["Canal 100%"], 1)
    assert await names(q="r_w") == (["Canal 100%"], 1)  # "_" is not a wildcard
    assert await names(q="0%") == (["Canal 100%"], 1)
    assert await names(q="%") == (["Canal 100%"], 1)
    assert await names(q="nothing like it") == ([], 0)
    assert await names(member_id=world["bob"]) == (["Bridge"], 1)
    assert (await names(member_id=world["alice"]))[1] == 4


@pytest_twisted.ensureDeferred
async def test_delete_cascades_and_names_the_stored_files(database: Database) -> None:
    """Deleting a project removes its members and file rows and returns the storage
    keys (bytes and thumbnail) the storage must now remove; a stale version keeps it."""

    def seed(c: Connection) -> str:
        owner = insert_user(c)
        project_id = insert_project(c, owner, name="Doomed")
        for n in range(2):
            c.execute(insert(files).values(
                id=str(uuid.uuid4()), project_id=project_id, storage_key=f"k{n}",
                original_name=f"f{n}.pdf", mime_type="application/pdf", extension="pdf",
                size=1, sha256="0" * 64, uploaded_by=owner.id,
                thumbnail_key="t0" if n == 0 else None,
            ))
        return project_id

    project_id = await run(database, seed)
    counted = await run(database, lambda c: repo.get_project(c, project_id))
    assert counted.file_count == 2
    with pytest.raises(repo.ProjectVersionMismatch):
        await run(database, lambda c: repo.delete_project(c, project_id, expected_version=7))
    gone = await run(database, lambda c: repo.delete_project(c, project_id,
                                                             expected_version=1))
    assert sorted((f.storage_key, f.thumbnail_key) for f in gone) == [("k0", "t0"), ("k1", None)]

    def left(c: Connection) -> tuple[int, int]:
        return (
            c.execute(select(func.count()).select_from(files)).scalar_one(),
            c.execute(select(func.count()).select_from(project_members)).scalar_one(),
        )

    assert await run(database, left) == (0, 0)
    with pytest.raises(repo.ProjectNotFound):
        await run(database, lambda c: repo.delete_project(c, project_id, expected_version=1))


@pytest_twisted.ensureDeferred
async def test_membership_keeps_an_owner(database: Database) -> None:
    """Members are added, re-roled and removed; the last owner can be neither demoted
    nor removed; unknown, deactivated and existing members are refused clearly."""

    def seed(c: Connection) -> dict[str, Any]:
        owner, other = insert_user(c, name="Olga"), insert_user(c, name="Per")
        gone = insert_user(c, active=False)
        return {"owner": owner.id, "other": other.id, "gone": gone.id,
                "project": insert_project(c, owner)}

    w = await run(database, seed)
    project = w["project"]

    def locked(fn: Any) -> Any:
        def work(c: Connection) -> Any:
            assert members.lock_project(c, project)
            return fn(c)
        return run(database, work)

    added = await locked(lambda c: members.add_member(c, project, w["other"], "editor",
                                                      added_by=w["owner"], now=NOW))
    assert (added.role, added.name, added.added_by) == ("editor", "Per", w["owner"])
    with pytest.raises(members.AlreadyMember):
        await locked(lambda c: members.add_member(c, project, w["other"], "viewer",
                                                  added_by=None, now=NOW))
    with pytest.raises(members.UserNotFound):
        await locked(lambda c: members.add_member(c, project, str(uuid.uuid4()), "viewer",
                                                  added_by=None, now=NOW))
    with pytest.raises(members.UserInactive):
        await locked(lambda c: members.add_member(c, project, w["gone"], "viewer",
                                                  added_by=None, now=NOW))
    with pytest.raises(members.LastOwner):
        await locked(lambda c: members.change_role(c, project, w["owner"], "editor"))
    with pytest.raises(members.LastOwner):
        await locked(lambda c: members.remove_member(c, project, w["owner"]))
    before, promoted = await locked(lambda c: members.change_role(c, project, w["other"],
                                                                  "owner"))
    assert (before, promoted.role) == ("editor", "owner")
    # With two owners, either may go.
    removed = await locked(lambda c: members.remove_member(c, project, w["owner"]))
    assert removed.role == "owner"
    listed = await run(database, lambda c: members.list_members(c, project))
    assert [(m.user_id, m.role) for m in listed] == [(w["other"], "owner")]
    with pytest.raises(members.NotAMember):
        await locked(lambda c: members.remove_member(c, project, w["owner"]))
    assert not await run(database, lambda c: members.lock_project(c, str(uuid.uuid4())))


@pytest_twisted.ensureDeferred
async def test_audit_rows_page_newest_first(database: Database) -> None:
    """Audit rows of one project come back newest first, paged, with the actor's name
    (a service principal's too) and the changes as recorded; other projects' rows and
    their count stay out."""

    def seed(c: Connection) -> tuple[str, str]:
        actor = insert_user(c, name="Ada")
        for n in range(5):
            audit.record(c, actor=actor, action="project.updated", target_type="project",
                         target_id="p1", project_id="p1", changes={"progress": [n, n + 1]},
                         request_id=f"r{n}")
        audit.record(c, actor=OPERATOR, action="project.updated", target_type="project",
                     target_id="p1", project_id="p1")
        audit.record(c, actor=actor, action="project.updated", target_type="project",
                     target_id="p2", project_id="p2")
        return actor.id, actor.name or ""

    actor_id, actor_name = await run(database, seed)
    first, total = await run(database, lambda c: audit.project_activity(c, "p1", page=1,
                                                                        per_page=4))
    assert total == 6
    assert [(e.actor_id, e.actor_name) for e in first[:2]] == [
        (None, "operator"), (actor_id, actor_name)]
    assert first[1].changes == {"progress": [4, 5]}
    assert first[1].request_id == "r4"
    second, _ = await run(database, lambda c: audit.project_activity(c, "p1", page=2,
                                                                     per_page=4))
    assert [e.changes for e in second] == [{"progress": [1, 2]}, {"progress": [0, 1]}]
    assert first[0].id > first[1].id > second[0].id


@pytest_twisted.ensureDeferred
async def test_one_writer_names_every_kind_of_actor(database: Database) -> None:
    """``audit.record`` writes the rows of accounts, projects and files alike: a user
    is kept by id with the name its principal carries, else its row's (access tokens
    carry no name); a service principal by name without an id (it has no user row);
    the operator command line (no principal) by that name. Empty changes are NULL, and
    the account writer files its rows under the user, outside any project."""
    from installsure.auth.audit import record_account_change
    from installsure.db.tables import audit_log

    def seed(c: Connection) -> tuple[str, list[Any]]:
        ada = insert_user(c, name="Ada")
        unnamed = Principal(id=ada.id, role=ada.role)  # as a verified access token gives
        audit.record(c, actor=ada, action="file.uploaded", target_type="file",
                     target_id="f1", project_id="p1", changes={"size": [None, 3]})
        audit.record(c, actor=unnamed, action="file.deleted", target_type="file",
                     target_id="f1", project_id="p1", changes={})
        audit.record(c, actor=OPERATOR, action="project.deleted", target_type="project",
                     target_id="p1", project_id="p1")
        record_account_change(c, actor=None, action="user.created", user_id=ada.id,
                              changes={"role": [None, "member"]}, request_id="r1")
        rows = c.execute(select(
            audit_log.c.actor_id, audit_log.c.actor_name, audit_log.c.action,
            audit_log.c.target_type, audit_log.c.target_id, audit_log.c.project_id,
            audit_log.c.changes, audit_log.c.request_id,
        ).order_by(audit_log.c.id)).all()
        return ada.id, [tuple(r) for r in rows]

    ada_id, rows = await run(database, seed)
    assert rows == [
        (ada_id, "Ada", "file.uploaded", "file", "f1", "p1", {"size": [None, 3]}, None),
        (ada_id, "Ada", "file.deleted", "file", "f1", "p1", None, None),
        (None, "operator", "project.deleted", "project", "p1", "p1", None, None),
        (None, audit.COMMAND_LINE_ACTOR, "user.created", "user", ada_id, None,
         {"role": [None, "member"]}, "r1"),
    ]
