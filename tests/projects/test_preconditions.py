"""ETag and If-Match on the project routes, and concurrent editors."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from tests.projects.api import ProjectsApi


async def _project(api: ProjectsApi) -> tuple[str, str, str]:
    """(token, project path, its ETag)."""
    _user, token = await api.user()
    created = await api.create(token, name="Conditional")
    return token, f"/api/projects/{created.data['id']}", created.header("ETag") or ""


@pytest_twisted.ensureDeferred
async def test_if_match_with_the_current_etag_applies(api: ProjectsApi) -> None:
    """PATCH, PUT and DELETE with the current ETag succeed, each change giving a new
    ETag; ``*`` matches whatever the version, and so does a list naming the current one."""
    token, path, tag = await _project(api)
    first = await api.call("PATCH", path, token, {"progress": 1}, headers={"If-Match": tag})
    assert first.status == 200
    new_tag = first.header("ETag")
    assert new_tag is not None
    assert new_tag != tag
    assert (await api.call("GET", path, token)).header("ETag") == new_tag
    put = await api.call("PUT", path, token, {"name": "Conditional", "progress": 2},
                         headers={"If-Match": f'"nope.1", {new_tag}'})
    assert put.status == 200
    star = await api.call("PATCH", path, token, {"progress": 3}, headers={"If-Match": "*"})
    assert star.status == 200
    gone = await api.call("DELETE", path, token, headers={"If-Match": star.header("ETag") or ""})
    assert gone.status == 200


@pytest_twisted.ensureDeferred
async def test_a_stale_etag_is_412_and_changes_nothing(api: ProjectsApi) -> None:
    """After someone else's change, the old ETag gets 412 PRECONDITION_FAILED with the
    current ETag, on PATCH, PUT and DELETE, and the project keeps the other change."""
    token, path, old = await _project(api)
    moved = await api.call("PATCH", path, token, {"progress": 50})
    for method, body in (("PATCH", {"progress": 10}), ("PUT", {"name": "X"}), ("DELETE", None)):
        stale = await api.call(method, path, token, body, headers={"If-Match": old})
        assert (stale.status, stale.body["code"]) == (412, "PRECONDITION_FAILED"), method
        assert stale.header("ETag") == moved.header("ETag")
    current = await api.call("GET", path, token)
    assert (current.data["progress"], current.data["name"]) == (50, "Conditional")


@pytest_twisted.ensureDeferred
async def test_weak_or_garbage_if_match_is_a_clear_400(api: ProjectsApi) -> None:
    """A weak ETag (never matches under If-Match) and a value that is not an entity tag
    are 400 BAD_REQUEST saying what to send, not a puzzling 412."""
    token, path, tag = await _project(api)
    weak = await api.call("PATCH", path, token, {"progress": 1}, headers={"If-Match": "W/" + tag})
    assert (weak.status, weak.body["code"]) == (400, "BAD_REQUEST")
    assert "weak" in weak.body["error"]
    for garbage in ("7", tag.strip('"'), '"unterminated', f"{tag} junk"):
        bad = await api.call("PATCH", path, token, {"progress": 1},
                             headers={"If-Match": garbage})
        assert (bad.status, bad.body["code"]) == (400, "BAD_REQUEST"), garbage
        assert "double quotes" in bad.body["error"]
    assert (await api.call("GET", path, token)).header("ETag") == tag


@pytest_twisted.ensureDeferred
async def test_visibility_is_decided_before_the_precondition(api: ProjectsApi) -> None:
    """Someone who may not see the project gets 404 whatever If-Match says, malformed
    values included (a 412 or 400 there would tell that the project exists)."""
    _token, path, tag = await _project(api)
    _other, other = await api.user()
    for value in (tag, '"x.1"', "W/" + tag, "garbage"):
        answer = await api.call("PATCH", path, other, {"progress": 1},
                                headers={"If-Match": value})
        assert answer.status == 404, value


@pytest_twisted.ensureDeferred
async def test_two_editors_with_one_etag_exactly_one_wins(api: ProjectsApi) -> None:
    """Two PATCHes sent at once with the same ETag: exactly one 200 and one 412, round
    after round; the winner's value is what is stored and the version rose by one."""
    token, path, tag = await _project(api)
    for round_ in range(6):
        answers = await gatherResults([
            Deferred.fromCoroutine(api.call("PATCH", path, token, {"progress": progress},
                                            headers={"If-Match": tag}))
            for progress in (10 + round_, 60 + round_)
        ])
        statuses = sorted(a.status for a in answers)
        assert statuses == [200, 412], [a.body for a in answers]
        winner = next(a for a in answers if a.status == 200)
        current = await api.call("GET", path, token)
        assert current.data["progress"] == winner.data["progress"]
        assert current.header("ETag") == winner.header("ETag")
        version = int((winner.header("ETag") or "").strip('"').rsplit(".", 1)[1])
        assert version == round_ + 2
        tag = winner.header("ETag") or ""
    activity = await api.call("GET", path + "/activity?perPage=100", token)
    assert [e["action"] for e in activity.data].count("project.updated") == 6
