"""Register, login, me, refresh, logout and change-password over real HTTP, on SQLite
and PostgreSQL, with a real Redis."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from sqlalchemy import select

from installsure.db.tables import audit_log, refresh_tokens, sessions, users
from tests.auth.conftest import SECRET, MakeStack, Stack


async def _rows(stack: Stack, query: Any) -> list[Any]:
    return await stack.database.run(lambda conn: list(conn.execute(query).all()))  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_first_account_is_admin_and_later_ones_members(stack: Stack) -> None:
    """The first registration of an empty system becomes admin, the second member; both
    get a token pair, the user JSON has the documented camelCase fields, and each
    registration writes a user.registered audit row."""
    first = await stack.register("Ada@Example.com", name="Ada")
    assert first.status == 201, first.body
    data = first.data
    assert data["tokenType"] == "Bearer"
    assert data["expiresIn"] == 900
    assert set(data["user"]) == {"id", "email", "name", "role", "isActive", "createdAt",
                                 "lastLoginAt"}
    assert data["user"]["role"] == "admin"
    assert data["user"]["email"] == "Ada@Example.com"
    assert data["user"]["createdAt"].endswith("Z")
    second = await stack.register("bob@example.com", name="Bob")
    assert second.status == 201, second.body
    assert second.data["user"]["role"] == "member"
    actions = await _rows(stack, select(audit_log.c.action, audit_log.c.target_id))
    assert sorted(a for a, _ in actions) == ["user.registered", "user.registered"]


@pytest_twisted.ensureDeferred
async def test_the_client_cannot_choose_a_role_or_reuse_an_address(stack: Stack) -> None:
    """A registration body naming a role is refused (400 naming the field), and an address
    that has an account, in any letter case, is 409."""
    refused = await stack.call("POST", "/api/auth/register", {
        "email": "eve@example.com", "password": "Correct-Horse-9!", "name": "Eve",
        "role": "admin"})
    assert refused.status == 400
    assert refused.body["details"] == [{"field": "role", "message": "is not a known field"}]
    assert (await stack.register("eve@example.com")).status == 201
    again = await stack.register("EVE@example.COM")
    assert again.status == 409, again.body
    assert again.body["code"] == "CONFLICT"


@pytest_twisted.ensureDeferred
async def test_password_policy_is_enforced_with_every_problem_listed(stack: Stack) -> None:
    """Too short, containing the address's name part, or common: each is a 400
    VALIDATION_ERROR on ``password``, and an acceptable password then registers."""
    cases = {
        "short": "Xy7!abc",
        "name part": "my-jonathan-is-long",
        "common": "password123",
        "common with suffix": "Sunshine2024!!",
    }
    for label, password in cases.items():
        answer = await stack.register("jonathan@example.com", password=password)
        assert answer.status == 400, (label, answer.body)
        assert answer.body["code"] == "VALIDATION_ERROR"
        assert {d["field"] for d in answer.body["details"]} == {"password"}, label
    assert (await stack.register("jonathan@example.com", password="tangerine-piano-42")
            ).status == 201


@pytest_twisted.ensureDeferred
async def test_login_me_verify_and_wrong_credentials(stack: Stack) -> None:
    """Login returns a token pair that /me and /verify accept; a wrong password and an
    unknown address both get the same 401 message; lastLoginAt is set."""
    await stack.register("carol@example.com", name="Carol")
    good = await stack.login("carol@example.com")
    assert good.status == 200, good.body
    token = good.data["accessToken"]
    assert good.data["user"]["lastLoginAt"] is not None
    me = await stack.call("GET", "/api/auth/me", token=token)
    assert me.status == 200
    assert me.data["email"] == "carol@example.com"
    verify = await stack.call("GET", "/api/auth/verify", token=token)
    assert verify.data == me.data
    wrong = await stack.login("carol@example.com", password="not-the-password-1")
    unknown = await stack.login("nobody@example.com")
    assert wrong.status == unknown.status == 401
    assert wrong.body["error"] == unknown.body["error"]
    assert wrong.body["code"] == unknown.body["code"] == "UNAUTHENTICATED"
    nothing = await stack.call("GET", "/api/auth/me")
    assert nothing.status == 401
    assert nothing.headers.getRawHeaders("WWW-Authenticate") == ['Bearer realm="installsure"']


@pytest_twisted.ensureDeferred
async def test_refresh_rotates_and_reuse_revokes_the_whole_session(stack: Stack) -> None:
    """Each refresh returns a new pair and spends the old refresh token; presenting a
    spent one again is 401 and ends the session: the newest refresh token and the access
    tokens of that session stop working too. Only hashes are stored."""
    signed = (await stack.register("dave@example.com")).data
    first_refresh = signed["refreshToken"]
    rotated = await stack.call("POST", "/api/auth/refresh", {"refreshToken": first_refresh})
    assert rotated.status == 200, rotated.body
    second_refresh = rotated.data["refreshToken"]
    second_access = rotated.data["accessToken"]
    assert second_refresh != first_refresh
    assert (await stack.call("GET", "/api/auth/me", token=second_access)).status == 200
    stored = [row[0] for row in await _rows(stack, select(refresh_tokens.c.token_hash))]
    assert first_refresh not in stored
    assert second_refresh not in stored
    assert all(len(h) == 64 for h in stored)

    reused = await stack.call("POST", "/api/auth/refresh", {"refreshToken": first_refresh})
    assert reused.status == 401
    newest = await stack.call("POST", "/api/auth/refresh", {"refreshToken": second_refresh})
    assert newest.status == 401
    assert (await stack.call("GET", "/api/auth/me", token=second_access)).status == 401
    assert (await stack.call("GET", "/api/auth/me", token=signed["accessToken"])).status == 401
    reasons = [row[0] for row in await _rows(stack, select(sessions.c.revoked_reason))]
    assert reasons == ["refresh_reused"]
    unknown = await stack.call("POST", "/api/auth/refresh", {"refreshToken": "x" * 43})
    assert unknown.status == 401


@pytest_twisted.ensureDeferred
async def test_logout_ends_only_this_session(stack: Stack) -> None:
    """Logout refuses that session's access and refresh tokens at once; another session
    of the same account keeps working."""
    await stack.register("erin@example.com")
    one = (await stack.login("erin@example.com")).data
    two = (await stack.login("erin@example.com")).data
    out = await stack.call("POST", "/api/auth/logout", token=one["accessToken"])
    assert out.status == 200, out.body
    assert out.data["loggedOut"] is True
    assert (await stack.call("GET", "/api/auth/me", token=one["accessToken"])).status == 401
    assert (await stack.call("POST", "/api/auth/refresh",
                             {"refreshToken": one["refreshToken"]})).status == 401
    assert (await stack.call("GET", "/api/auth/me", token=two["accessToken"])).status == 200


@pytest_twisted.ensureDeferred
async def test_change_password_checks_the_current_one_and_ends_other_sessions(
    stack: Stack,
) -> None:
    """A wrong current password is 400 on currentPassword and changes nothing; the right
    one stores the new password, keeps this session, ends the others, and only the new
    password signs in afterwards; an audit row records it."""
    await stack.register("frank@example.com")
    this = (await stack.login("frank@example.com")).data
    other = (await stack.login("frank@example.com")).data
    wrong = await stack.call("POST", "/api/auth/change-password", {
        "currentPassword": "guess-guess-guess", "newPassword": "violet-submarine-77"},
        token=this["accessToken"])
    assert wrong.status == 400
    assert wrong.body["details"][0]["field"] == "currentPassword"
    same = await stack.call("POST", "/api/auth/change-password", {
        "currentPassword": "Correct-Horse-9!", "newPassword": "Correct-Horse-9!"},
        token=this["accessToken"])
    assert same.status == 400
    assert same.body["details"][0]["field"] == "newPassword"
    changed = await stack.call("POST", "/api/auth/change-password", {
        "currentPassword": "Correct-Horse-9!", "newPassword": "violet-submarine-77"},
        token=this["accessToken"])
    assert changed.status == 200, changed.body
    assert changed.data == {"passwordChanged": True, "otherSessionsEnded": 2}
    assert (await stack.call("GET", "/api/auth/me", token=this["accessToken"])).status == 200
    assert (await stack.call("GET", "/api/auth/me", token=other["accessToken"])).status == 401
    assert (await stack.login("frank@example.com")).status == 401
    assert (await stack.login("frank@example.com", "violet-submarine-77")).status == 200
    actions = [row[0] for row in await _rows(stack, select(audit_log.c.action))]
    assert "user.password_changed" in actions


@pytest_twisted.ensureDeferred
async def test_closed_registration_leaves_account_creation_to_admins(
    make_stack: MakeStack,
) -> None:
    """With auth.registration = closed, POST /api/auth/register is 403 and an admin (here
    the operator token) creates accounts with POST /api/users, who can then sign in."""
    stack = await make_stack(registration="closed")
    closed = await stack.register("gina@example.com")
    assert closed.status == 403
    created = await stack.call("POST", "/api/users", {
        "email": "gina@example.com", "password": "orchid-lantern-31", "name": "Gina",
        "role": "manager"}, token=SECRET)
    assert created.status == 201, created.body
    assert created.data["role"] == "manager"
    signed = await stack.login("gina@example.com", "orchid-lantern-31")
    assert signed.status == 200
    assert signed.data["user"]["role"] == "manager"
    rows = await _rows(stack, select(users.c.email_key, users.c.role))
    assert rows == [("gina@example.com", "manager")]


@pytest_twisted.ensureDeferred
async def test_operator_token_is_not_an_account(stack: Stack) -> None:
    """The operator token works on admin routes but /me, logout and change-password
    answer 403: it has no account."""
    assert (await stack.call("GET", "/api/users", token=SECRET)).status == 200
    for method, path in [("GET", "/api/auth/me"), ("POST", "/api/auth/logout")]:
        answer = await stack.call(method, path, token=SECRET)
        assert answer.status == 403, (path, answer.body)
