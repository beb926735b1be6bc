"""Builders shared by the project tests: users, projects and a test-only authenticator.

Until accounts exist (the auth work), requests authenticate with a bearer value that
:class:`TestAuthenticator` maps to the Principal of a user row the test inserted. It
lives here, in tests/, and nowhere in the package: there is no production bypass.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
from sqlalchemy import Connection, insert

from installsure.auth.operator import OPERATOR
from installsure.auth.policy import allows_global
from installsure.auth.principal import Principal
from installsure.db.projects import create_project
from installsure.db.tables import project_members, users
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError

OPERATOR_SECRET = "operator-secret-for-tests"


def insert_user(
    connection: Connection, *, role: str = "member", name: str | None = None,
    active: bool = True, user_id: str | None = None,
) -> Principal:
    """A users row; the Principal its access tokens would give."""
    user_id = user_id or str(uuid.uuid4())
    name = name or f"{role} {user_id[:8]}"
    connection.execute(insert(users).values(
        id=user_id, email=f"{user_id}@example.test", email_key=f"{user_id}@example.test",
        name=name, password_hash="not-a-hash", role=role, is_active=active,
    ))
    return Principal(id=user_id, role=role, name=name, session_id=str(uuid.uuid4()))


def insert_project(
    connection: Connection, owner: Principal | None, *, name: str | None = None,
    **values: Any,
) -> str:
    """A project owned by ``owner`` (None: without members); its id."""
    project_id = str(uuid.uuid4())
    create_project(
        connection, project_id, {"name": name or f"Project {project_id[:8]}", **values},
        owner_id=owner.id if owner is not None else None, now=datetime.now(UTC),
    )
    return project_id


def add_membership(connection: Connection, project_id: str, user: Principal, role: str) -> None:
    connection.execute(insert(project_members).values(
        project_id=project_id, user_id=user.id, role=role, added_at=datetime.now(UTC),
    ))


@attrs.define
class TestAuthenticator:
    """``Authorization: Bearer <token>`` → the Principal registered for that token; the
    operator secret → OPERATOR. Anything else is 401, a weaker role than the route
    needs is 403: as the real authenticator answers."""

    __test__ = False  # not a pytest class

    principals: dict[str, Principal] = attrs.field(factory=dict)

    def token_for(self, principal: Principal) -> str:
        token = f"test-{principal.id}"
        self.principals[token] = principal
        return token

    def __call__(self, ctx: RequestContext, requirement: str) -> Principal:
        raw = ctx.request.getHeader(b"authorization") or b""  # type: ignore[no-untyped-call]
        sent = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        scheme, _, token = sent.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError("UNAUTHENTICATED", "Send 'Authorization: Bearer <access token>'.")
        principal = OPERATOR if token == OPERATOR_SECRET else self.principals.get(token)
        if principal is None:
            raise ApiError("UNAUTHENTICATED", "Invalid or expired token.")
        if not allows_global(principal, requirement):
            raise ApiError("FORBIDDEN", f"This endpoint needs the {requirement} role.")
        return principal


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


Sync = Callable[[Connection], Any]
