"""DatabaseProjectAccess (roles, subscription decisions) and the membership signal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import Connection, insert
from twisted.internet.defer import Deferred

from installsure.auth.interfaces import MEMBERSHIP_CHANGED_CHANNEL
from installsure.auth.membership import DatabaseProjectAccess, MembershipSignals
from installsure.auth.operator import OPERATOR
from installsure.db import Database
from installsure.db.tables import files
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.db.helpers import within
from tests.fixtures.redis import RedisServerProcess
from tests.projects.helpers import add_membership, insert_project, insert_user


@pytest.fixture
def redis(redis_server: RedisServerProcess) -> Iterator[RedisService]:
    """A Redis client connected to the test's private redis-server."""
    service = RedisService(RedisTarget.from_url(redis_server.url), key_prefix="t:")
    service.startService()
    pytest_twisted.blockon(within(service.when_connected(5)))
    yield service
    pytest_twisted.blockon(service.stopService())


def _file(c: Connection, project_id: str | None, uploader: str) -> str:
    file_id = str(uuid.uuid4())
    c.execute(insert(files).values(
        id=file_id, project_id=project_id, storage_key=file_id, original_name="a.pdf",
        mime_type="application/pdf", extension="pdf", size=1, sha256="0" * 64,
        uploaded_by=uploader,
    ))
    return file_id


@pytest_twisted.ensureDeferred
async def test_subscription_decisions(database: Database) -> None:
    """Project topics: members, managers, admins and the operator may, other members
    and viewers may not, nor anyone for a project that does not exist; file topics
    follow the file's project, and a file without one its uploader and admins; the
    all-projects wildcard only those who see every project; other topics are not
    decided here (False)."""

    def seed(c: Connection) -> dict[str, Any]:
        owner, viewer_member = insert_user(c), insert_user(c, role="viewer")
        stranger, lone_viewer = insert_user(c), insert_user(c, role="viewer")
        manager, admin = insert_user(c, role="manager"), insert_user(c, role="admin")
        project = insert_project(c, owner)
        add_membership(c, project, viewer_member, "viewer")
        return {
            "owner": owner, "viewer_member": viewer_member, "stranger": stranger,
            "lone_viewer": lone_viewer, "manager": manager, "admin": admin,
            "project": project,
            "project_file": _file(c, project, owner.id),
            "loose_file": _file(c, None, stranger.id),
        }

    w = await database.run(seed)
    access = DatabaseProjectAccess(database)
    project_topic = f"installsure.project.{w['project']}.updated"
    prefix_topic = f"installsure.project.{w['project']}."
    missing_topic = f"installsure.project.{uuid.uuid4()}.updated"
    file_topic = f"installsure.file.{w['project_file']}.progress"
    loose_topic = f"installsure.file.{w['loose_file']}.progress"
    wildcard = "installsure.project..updated"
    cases = [
        ("owner", project_topic, True), ("owner", prefix_topic, True),
        ("viewer_member", project_topic, True), ("stranger", project_topic, False),
        ("lone_viewer", project_topic, False), ("manager", project_topic, True),
        ("admin", project_topic, True), (OPERATOR, project_topic, True),
        ("admin", missing_topic, False), ("manager", missing_topic, False),
        ("owner", file_topic, True), ("viewer_member", file_topic, True),
        ("stranger", file_topic, False), ("manager", file_topic, True),
        ("stranger", loose_topic, True), ("owner", loose_topic, False),
        ("manager", loose_topic, False), ("admin", loose_topic, True),
        ("admin", f"installsure.file.{uuid.uuid4()}.progress", False),
        ("manager", wildcard, True), ("admin", wildcard, True), ("owner", wildcard, False),
        ("admin", "installsure.queue.email-send.status", False),
        ("admin", f"installsure.project.{w['project']}", False),  # no event segment
        ("owner", "installsure.projects.x.updated", False),
    ]
    wrong = []
    for who, topic, expected in cases:
        principal = who if who is OPERATOR else w[who]
        decided = await access.may_subscribe(principal, topic)
        if decided is not expected:
            wrong.append((who if isinstance(who, str) else "operator", topic, decided))
    assert wrong == []


@pytest_twisted.ensureDeferred
async def test_project_role(database: Database) -> None:
    """project_role is the member's role, None for a non-member, an unknown project
    and the operator (which has no user row)."""

    def seed(c: Connection) -> dict[str, Any]:
        owner, editor, stranger = insert_user(c), insert_user(c), insert_user(c)
        project = insert_project(c, owner)
        add_membership(c, project, editor, "editor")
        return {"owner": owner, "editor": editor, "stranger": stranger, "project": project}

    w = await database.run(seed)
    access = DatabaseProjectAccess(database)
    assert await access.project_role(w["owner"], w["project"]) == "owner"
    assert await access.project_role(w["editor"], w["project"]) == "editor"
    assert await access.project_role(w["stranger"], w["project"]) is None
    assert await access.project_role(w["owner"], str(uuid.uuid4())) is None
    assert await access.project_role(OPERATOR, w["project"]) is None


@pytest_twisted.ensureDeferred
async def test_require_answers_as_the_routes_do(database: Database) -> None:
    """require() gives the role when the action is allowed, 404 for a hidden or missing
    project (admins too for a missing one) and 403 for a visible one the role may not
    change: what other parts' routes (files) answer with."""
    from installsure.auth.policy import ProjectAction
    from installsure.http.errors import ApiError

    def seed(c: Connection) -> dict[str, Any]:
        owner, viewer, stranger = insert_user(c), insert_user(c), insert_user(c)
        admin = insert_user(c, role="admin")
        project = insert_project(c, owner)
        add_membership(c, project, viewer, "viewer")
        return {"owner": owner, "viewer": viewer, "stranger": stranger, "admin": admin,
                "project": project}

    w = await database.run(seed)
    access = DatabaseProjectAccess(database)
    assert await access.require(w["owner"], w["project"], ProjectAction.DELETE) == "owner"
    assert await access.require(w["viewer"], w["project"], ProjectAction.VIEW) == "viewer"
    assert await access.require(w["admin"], w["project"], ProjectAction.DELETE) is None
    assert await access.require(OPERATOR, w["project"], ProjectAction.EDIT) is None
    cases = [("viewer", w["project"], ProjectAction.EDIT, 403),
             ("stranger", w["project"], ProjectAction.VIEW, 404),
             ("admin", str(uuid.uuid4()), ProjectAction.VIEW, 404)]
    for who, project, action, status in cases:
        with pytest.raises(ApiError) as refused:
            await access.require(w[who], project, action)
        assert refused.value.status == status, who


@pytest_twisted.ensureDeferred
async def test_membership_signal_reaches_a_redis_subscriber(redis: RedisService) -> None:
    """changed() publishes the JSON the interface documents on the membership channel
    of a real Redis, where a subscriber receives it."""
    received: Deferred[tuple[str, str]] = Deferred()
    subscription = await within(redis.subscribe(
        MEMBERSHIP_CHANGED_CHANNEL,
        lambda channel, message: received.called or received.callback((channel, message)),
    ))
    try:
        await MembershipSignals(redis).changed("p1", "u1", "role", "editor")
        channel, message = await within(received, 10)
    finally:
        await subscription.cancel()
    assert channel == MEMBERSHIP_CHANGED_CHANNEL
    assert json.loads(message) == {"projectId": "p1", "userId": "u1", "change": "role",
                                   "role": "editor"}


@pytest_twisted.ensureDeferred
async def test_membership_signal_without_redis_is_logged_not_raised(
    redis: RedisService, redis_server: RedisServerProcess,
) -> None:
    """With Redis gone the signal cannot be sent: changed() still succeeds (the change
    it reports has committed) and the loss is logged."""
    from tests.http.helpers import captured_events

    redis_server.kill()
    with captured_events("installsure.auth.membership") as events:
        await within(MembershipSignals(redis).changed("p1", None, "deleted", None), 20)
    assert any("not signalled" in e["log_format"] for e in events)
