"""Members of a project over HTTP, the last-owner rule, the signals, and activity."""

from __future__ import annotations

import uuid

import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from tests.projects.api import ProjectsApi


@pytest_twisted.ensureDeferred
async def test_members_are_added_rerolled_and_removed(api: ProjectsApi) -> None:
    """An owner adds a user (201), changes the role and removes them; each change is
    an audit row, a ``member`` event and a membership signal through Redis."""
    owner, token = await api.user(name="Olga")
    user, user_token = await api.user(name="Per")
    pid = (await api.create(token, name="Team")).data["id"]
    members = f"/api/projects/{pid}/members"
    added = await api.call("POST", members, token, {"userId": user.id, "role": "viewer"})
    assert added.status == 201
    assert {k: added.data[k] for k in ("userId", "name", "role", "isActive", "addedBy")} == {
        "userId": user.id, "name": "Per", "role": "viewer", "isActive": True,
        "addedBy": owner.id}
    assert (await api.call("GET", f"/api/projects/{pid}", user_token)).status == 200
    await api.signal({"projectId": pid, "userId": user.id, "change": "added", "role": "viewer"})
    changed = await api.call("PATCH", f"{members}/{user.id}", token, {"role": "editor"})
    assert (changed.status, changed.data["role"]) == (200, "editor")
    await api.signal({"projectId": pid, "userId": user.id, "change": "role", "role": "editor"})
    listed = await api.call("GET", members, user_token)
    assert [(m["name"], m["role"]) for m in listed.data] == [("Olga", "owner"), ("Per", "editor")]
    removed = await api.call("DELETE", f"{members}/{user.id}", token)
    assert removed.data == {"projectId": pid, "userId": user.id, "removed": True}
    await api.signal({"projectId": pid, "userId": user.id, "change": "removed", "role": None})
    assert (await api.call("GET", f"/api/projects/{pid}", user_token)).status == 404
    member_events = [(t, p["type"], p["role"], p["previousRole"]) for t, p in api.events.events
                     if t.endswith(".member")]
    topic = f"installsure.project.{pid}.member"
    assert member_events == [(topic, "member.added", "viewer", None),
                             (topic, "member.role_changed", "editor", "viewer"),
                             (topic, "member.removed", None, "editor")]
    activity = await api.call("GET", f"/api/projects/{pid}/activity", token)
    assert [(e["action"], e["target"], e["changes"]) for e in activity.data[:3]] == [
        ("member.removed", {"type": "user", "id": user.id}, {"role": ["editor", None]}),
        ("member.role_changed", {"type": "user", "id": user.id}, {"role": ["viewer", "editor"]}),
        ("member.added", {"type": "user", "id": user.id}, {"role": [None, "viewer"]}),
    ]


@pytest_twisted.ensureDeferred
async def test_a_project_always_keeps_an_owner(api: ProjectsApi) -> None:
    """Demoting or removing the last owner is 409 with a sentence saying what to do;
    with a second owner both are fine, and no audit row is written for a refusal."""
    owner, token = await api.user()
    other, _other_token = await api.user()
    pid = (await api.create(token, name="Owned")).data["id"]
    members = f"/api/projects/{pid}/members"
    demote = await api.call("PATCH", f"{members}/{owner.id}", token, {"role": "editor"})
    assert (demote.status, demote.body["code"]) == (409, "CONFLICT")
    assert "last owner" in demote.body["error"]
    remove = await api.call("DELETE", f"{members}/{owner.id}", token)
    assert remove.status == 409
    assert "make another member an owner" in remove.body["error"]
    await api.call("POST", members, token, {"userId": other.id, "role": "owner"})
    assert (await api.call("PATCH", f"{members}/{owner.id}", token, {"role": "editor"})).status \
        == 200
    activity = await api.call("GET", f"/api/projects/{pid}/activity", token)
    assert [e["action"] for e in activity.data] == [
        "member.role_changed", "member.added", "project.created"]


@pytest_twisted.ensureDeferred
async def test_two_owners_demoting_each_other_at_once_leave_one(api: ProjectsApi) -> None:
    """Two owners demote each other at the same moment: one succeeds, the other is the
    last owner now and gets 409; the project has exactly one owner."""
    for _round in range(3):
        a, a_token = await api.user()
        b, b_token = await api.user()
        pid = (await api.create(a_token, name=f"Duo {uuid.uuid4()}")).data["id"]
        members = f"/api/projects/{pid}/members"
        await api.call("POST", members, a_token, {"userId": b.id, "role": "owner"})
        answers = await gatherResults([
            Deferred.fromCoroutine(api.call("PATCH", f"{members}/{b.id}", a_token,
                                            {"role": "viewer"})),
            Deferred.fromCoroutine(api.call("PATCH", f"{members}/{a.id}", b_token,
                                            {"role": "viewer"})),
        ])
        statuses = sorted(x.status for x in answers)
        # The loser may also be 403: it was demoted, so no longer manages members.
        assert statuses in ([200, 403], [200, 409]), [x.body for x in answers]
        listed = await api.call("GET", members, a_token)
        assert [m["role"] for m in listed.data].count("owner") == 1


@pytest_twisted.ensureDeferred
async def test_bad_member_requests_get_clear_answers(api: ProjectsApi) -> None:
    """An unknown user is 404 and a deactivated one 409, each saying so; adding a member
    twice is 409; a non-member's role change or removal is 404; an unknown role is 400;
    members who do not own the project may not manage members (403)."""
    _owner, token = await api.user()
    member, member_token = await api.user()
    inactive, _ = await api.user(active=False)
    pid = (await api.create(token, name="Strict")).data["id"]
    members = f"/api/projects/{pid}/members"
    unknown = await api.call("POST", members, token, {"userId": str(uuid.uuid4()),
                                                      "role": "viewer"})
    assert (unknown.status, unknown.body["code"]) == (404, "NOT_FOUND")
    assert "no user with id" in unknown.body["error"]
    asleep = await api.call("POST", members, token, {"userId": inactive.id, "role": "viewer"})
    assert (asleep.status, asleep.body["code"]) == (409, "CONFLICT")
    assert "deactivated" in asleep.body["error"]
    assert (await api.call("POST", members, token,
                           {"userId": member.id, "role": "editor"})).status == 201
    twice = await api.call("POST", members, token, {"userId": member.id, "role": "viewer"})
    assert (twice.status, twice.body["code"]) == (409, "CONFLICT")
    stranger = str(uuid.uuid4())
    assert (await api.call("PATCH", f"{members}/{stranger}", token,
                           {"role": "viewer"})).status == 404
    assert (await api.call("DELETE", f"{members}/{stranger}", token)).status == 404
    assert (await api.call("POST", members, token, {"userId": member.id,
                                                    "role": "boss"})).fields() == ["role"]
    assert (await api.call("POST", members, member_token,
                           {"userId": inactive.id, "role": "viewer"})).status == 403
    assert (await api.call("DELETE", f"{members}/{member.id}", member_token)).status == 403


@pytest_twisted.ensureDeferred
async def test_activity_pages_newest_first(api: ProjectsApi) -> None:
    """25 changes after the creation: pages of 10 newest first with total 26, each
    entry {id, at, actor {id, name}, action, target, changes}."""
    user, token = await api.user(name="Ada")
    pid = (await api.create(token, name="Busy")).data["id"]
    for progress in range(1, 26):
        assert (await api.call("PATCH", f"/api/projects/{pid}", token,
                               {"progress": progress})).status == 200
    first = await api.call("GET", f"/api/projects/{pid}/activity?perPage=10", token)
    third = await api.call("GET", f"/api/projects/{pid}/activity?perPage=10&page=3", token)
    assert first.body["meta"] == {"page": 1, "perPage": 10, "total": 26}
    assert [e["changes"]["progress"][1] for e in first.data] == list(range(25, 15, -1))
    assert [e["action"] for e in third.data] == ["project.updated"] * 5 + ["project.created"]
    entry = first.data[0]
    assert set(entry) == {"id", "at", "actor", "action", "target", "changes"}
    assert entry["actor"] == {"id": user.id, "name": "Ada"}
    assert entry["target"] == {"type": "project", "id": pid}
    assert entry["at"].endswith("Z")
    ids = [int(e["id"]) for e in first.data + third.data]
    assert ids == sorted(ids, reverse=True)
    _other, other = await api.user()
    assert (await api.call("GET", f"/api/projects/{pid}/activity", other)).status == 404
