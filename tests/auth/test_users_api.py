"""Administering accounts over HTTP: the list, role changes, deactivation, the last
admin, and the queue admin routes for admin users."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from sqlalchemy import select

from installsure.db.tables import audit_log
from tests.auth.conftest import SECRET, Stack


async def _signed_in(stack: Stack, email: str) -> dict[str, Any]:
    registered = await stack.register(email, name=email.split("@", maxsplit=1)[0])
    assert registered.status == 201, registered.body
    return registered.data  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_admin_lists_users_with_paging_and_filters(stack: Stack) -> None:
    """GET /api/users pages oldest first with meta totals and filters by q, role and
    active; a member is 403 and no token is 401."""
    admin = await _signed_in(stack, "root@example.com")
    for n in range(4):
        await _signed_in(stack, f"worker{n}@example.com")
    token = admin["accessToken"]
    first = await stack.call("GET", "/api/users?page=1&perPage=2", token=token)
    assert first.status == 200, first.body
    assert first.body["meta"] == {"page": 1, "perPage": 2, "total": 5}
    assert [u["email"] for u in first.data] == ["root@example.com", "worker0@example.com"]
    last = await stack.call("GET", "/api/users?page=3&perPage=2", token=token)
    assert [u["email"] for u in last.data] == ["worker3@example.com"]
    found = await stack.call("GET", "/api/users?q=WORKER2", token=token)
    assert [u["email"] for u in found.data] == ["worker2@example.com"]
    admins = await stack.call("GET", "/api/users?role=admin", token=token)
    assert [u["email"] for u in admins.data] == ["root@example.com"]
    bad = await stack.call("GET", "/api/users?perPage=500", token=token)
    assert bad.status == 400
    assert bad.body["details"][0]["field"] == "perPage"
    member = (await stack.login("worker0@example.com")).data["accessToken"]
    assert (await stack.call("GET", "/api/users", token=member)).status == 403
    assert (await stack.call("GET", "/api/users")).status == 401


@pytest_twisted.ensureDeferred
async def test_role_change_ends_sessions_and_applies_at_next_sign_in(stack: Stack) -> None:
    """PATCH role: the account's tokens stop working at once, its next sign-in carries
    the new role, and an audit row records before and after."""
    admin = await _signed_in(stack, "root@example.com")
    member = await _signed_in(stack, "mia@example.com")
    user_id = member["user"]["id"]
    changed = await stack.call("PATCH", f"/api/users/{user_id}", {"role": "manager"},
                               token=admin["accessToken"])
    assert changed.status == 200, changed.body
    assert changed.data["role"] == "manager"
    assert (await stack.call("GET", "/api/auth/me", token=member["accessToken"])).status == 401
    again = await stack.login("mia@example.com")
    assert again.data["user"]["role"] == "manager"
    rows = await stack.database.run(lambda conn: conn.execute(
        select(audit_log.c.action, audit_log.c.changes, audit_log.c.actor_id)
        .where(audit_log.c.action == "user.role_changed")).all())
    assert [(r.changes, r.actor_id) for r in rows] == [
        ({"role": ["member", "manager"]}, admin["user"]["id"])]


@pytest_twisted.ensureDeferred
async def test_deactivation_ends_sessions_at_once_and_blocks_sign_in(stack: Stack) -> None:
    """A deactivated account's access and refresh tokens are refused immediately and it
    cannot sign in (same 401 as a wrong password); reactivating lets it sign in again."""
    admin = await _signed_in(stack, "root@example.com")
    worker = await _signed_in(stack, "walt@example.com")
    user_id = worker["user"]["id"]
    assert (await stack.call("GET", "/api/auth/me", token=worker["accessToken"])).status == 200
    off = await stack.call("PATCH", f"/api/users/{user_id}", {"isActive": False},
                           token=admin["accessToken"])
    assert off.status == 200, off.body
    assert off.data["isActive"] is False
    assert (await stack.call("GET", "/api/auth/me", token=worker["accessToken"])).status == 401
    assert (await stack.call("POST", "/api/auth/refresh",
                             {"refreshToken": worker["refreshToken"]})).status == 401
    refused = await stack.login("walt@example.com")
    wrong = await stack.login("root@example.com", "a-wrong-password")
    assert refused.status == 401
    assert refused.body["error"] == wrong.body["error"]
    on = await stack.call("PATCH", f"/api/users/{user_id}", {"isActive": True},
                          token=admin["accessToken"])
    assert on.data["isActive"] is True
    assert (await stack.login("walt@example.com")).status == 200


@pytest_twisted.ensureDeferred
async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(stack: Stack) -> None:
    """With one admin, demoting or deactivating it is 409 and changes nothing; once a
    second admin exists, the first can be demoted."""
    admin = await _signed_in(stack, "root@example.com")
    other = await _signed_in(stack, "olga@example.com")
    admin_id = admin["user"]["id"]
    for change in ({"role": "member"}, {"isActive": False}):
        refused = await stack.call("PATCH", f"/api/users/{admin_id}", change,
                                   token=admin["accessToken"])
        assert refused.status == 409, (change, refused.body)
    still = await stack.call("GET", f"/api/users/{admin_id}", token=SECRET)
    assert (still.data["role"], still.data["isActive"]) == ("admin", True)
    promoted = await stack.call("PATCH", f"/api/users/{other['user']['id']}",
                                {"role": "admin"}, token=SECRET)
    assert promoted.status == 200
    demoted = await stack.call("PATCH", f"/api/users/{admin_id}", {"role": "member"},
                               token=SECRET)
    assert demoted.status == 200, demoted.body


@pytest_twisted.ensureDeferred
async def test_patch_refuses_unknown_fields_roles_and_ids(stack: Stack) -> None:
    """Unknown fields and roles are 400 naming them; an unknown id is 404."""
    admin = await _signed_in(stack, "root@example.com")
    token = admin["accessToken"]
    user_id = admin["user"]["id"]
    extra = await stack.call("PATCH", f"/api/users/{user_id}", {"password": "x"}, token=token)
    assert extra.status == 400
    assert extra.body["details"][0]["field"] == "password"
    role = await stack.call("PATCH", f"/api/users/{user_id}", {"role": "owner"}, token=token)
    assert role.status == 400
    assert role.body["details"][0]["field"] == "role"
    missing = await stack.call("PATCH", "/api/users/00000000-0000-4000-8000-000000000000",
                               {"role": "member"}, token=token)
    assert missing.status == 404


@pytest_twisted.ensureDeferred
async def test_queue_admin_routes_work_for_admin_users(stack: Stack) -> None:
    """The queue routes accept an admin's access token, give a manager the status (the
    manager's route) but 403 on admin routes, refuse a member with 403, and still accept
    the operator token."""
    admin = await _signed_in(stack, "root@example.com")
    manager = await _signed_in(stack, "max@example.com")
    member = await _signed_in(stack, "meg@example.com")
    await stack.call("PATCH", f"/api/users/{manager['user']['id']}", {"role": "manager"},
                     token=admin["accessToken"])
    manager_token = (await stack.login("max@example.com")).data["accessToken"]
    status = await stack.call("GET", "/api/queue/status", token=admin["accessToken"])
    assert status.status == 200, status.body
    assert "email-send" in status.data["queues"]
    paused = await stack.call("POST", "/api/queue/email-send/pause", token=admin["accessToken"])
    assert paused.status == 200
    assert paused.data["isPaused"] is True
    assert (await stack.call("GET", "/api/queue/status", token=manager_token)).status == 200
    assert (await stack.call("POST", "/api/queue/email-send/resume",
                             token=manager_token)).status == 403
    assert (await stack.call("GET", "/api/queue/status",
                             token=member["accessToken"])).status == 403
    assert (await stack.call("POST", "/api/queue/email-send/resume", token=SECRET)).status == 200
