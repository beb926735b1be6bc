"""Builders shared by the project tests: users, projects, sessions and real tokens."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert
from twisted.internet import reactor

from installsure.auth.assembly import AuthParts, build_auth
from installsure.auth.principal import Principal
from installsure.auth.settings import AuthSettings
from installsure.db import Database
from installsure.db.projects import create_project
from installsure.db.tables import project_members, sessions, users
from installsure.redis.client import RedisService

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


#: Real access tokens and the operator secret; the cheapest argon2 (nobody signs in with
#: a password in these tests: tokens are issued for sessions the tests open).
TEST_AUTH = AuthSettings(
    jwt_secret=secrets.token_urlsafe(48), api_secret=OPERATOR_SECRET,
    argon2_time_cost=1, argon2_memory_kib=64, argon2_parallelism=1,
)


def start_auth(database: Database, redis: RedisService) -> AuthParts:
    """The server's real auth parts over the test's database and Redis, started (stop
    ``.service`` afterwards)."""
    auth = build_auth(TEST_AUTH, redis=redis, database=database, limiter=None,
                      reactor=reactor)
    auth.service.startService()
    return auth


async def token_for(database: Database, auth: AuthParts, user: Principal) -> str:
    """A real access token of a new session of ``user``'s (as a sign-in would give)."""
    session_id = str(uuid.uuid4())

    def open_session(c: Connection) -> None:
        c.execute(insert(sessions).values(id=session_id, user_id=user.id,
                                          expires_at=datetime.now(UTC) + timedelta(days=1)))

    await database.run(open_session)
    return auth.tokens.issue(user.id, user.role, session_id).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

