"""The account rules that must hold however requests interleave: one first admin, and
never zero active admins; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import defer

from installsure.db.engine import create_engine_for
from installsure.db.migrate import upgrade
from installsure.db.tables import users
from installsure.db.urls import parse_database_url
from installsure.db.users import insert_user
from tests.auth.conftest import SECRET, MakeStack

RACERS = 8


def test_concurrent_first_inserts_make_exactly_one_admin(database_url: str) -> None:
    """Eight transactions on eight connections, released at once by a barrier, each
    create an account on an empty system with the first-user rule: exactly one is
    admin."""
    upgrade(database_url, "head")
    engine = create_engine_for(parse_database_url(database_url), pool_size=RACERS)
    barrier = threading.Barrier(RACERS, timeout=30)
    errors: list[BaseException] = []

    def register(n: int) -> None:
        try:
            with engine.connect() as conn:
                # Released together; SQLite's BEGIN then queues them for its write lock.
                barrier.wait()
                with conn.begin():
                    insert_user(
                        conn, email=f"racer{n}@example.com", name=f"Racer {n}",
                        password_hash="$argon2id$x", role=None, now=datetime.now(UTC))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=register, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors, errors
        with engine.connect() as conn:
            roles = conn.execute(select(users.c.role, func.count()).group_by(users.c.role)).all()
        assert dict(roles) == {"admin": 1, "member": RACERS - 1}  # type: ignore[arg-type]
    finally:
        engine.dispose()


@pytest_twisted.ensureDeferred
async def test_concurrent_registrations_on_two_processes_make_one_admin(
    make_stack: MakeStack,
) -> None:
    """Ten registrations sent at once, alternating between two server processes of one
    deployment: one becomes admin, nine members."""
    stacks = [await make_stack(), await make_stack()]
    answers = await defer.gatherResults([
        defer.Deferred.fromCoroutine(stacks[n % 2].register(f"early{n}@example.com"))
        for n in range(10)])
    assert [a.status for a in answers] == [201] * 10
    roles = sorted(a.data["user"]["role"] for a in answers)
    assert roles == ["admin"] + ["member"] * 9


@pytest_twisted.ensureDeferred
async def test_two_admins_demoting_each_other_at_once_leave_one(make_stack: MakeStack) -> None:
    """Two admins each demote the other at the same moment (through two processes):
    one change wins, the other is 409, and one active admin remains."""
    a, b = await make_stack(), await make_stack()
    first = (await a.register("ann@example.com")).data
    second = (await a.register("ben@example.com")).data
    await a.call("PATCH", f"/api/users/{second['user']['id']}", {"role": "admin"},
                 token=SECRET)
    tokens = [(await a.login(e)).data["accessToken"] for e in ("ann@example.com",
                                                                "ben@example.com")]
    answers: list[Any] = await defer.gatherResults([
        defer.Deferred.fromCoroutine(a.call(
            "PATCH", f"/api/users/{second['user']['id']}", {"role": "member"},
            token=tokens[0])),
        defer.Deferred.fromCoroutine(b.call(
            "PATCH", f"/api/users/{first['user']['id']}", {"role": "member"},
            token=tokens[1])),
    ])
    statuses = sorted(answer.status for answer in answers)
    # The loser is either refused as the last admin (409) or, having been demoted
    # (its sessions ended) an instant before, no longer authenticated (401).
    assert statuses in ([200, 409], [200, 401]), [a.body for a in answers]
    admins = await a.call("GET", "/api/users?role=admin&active=true", token=SECRET)
    assert admins.body["meta"]["total"] == 1
