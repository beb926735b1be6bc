"""The authorization matrix (see matrix.py) against the real site: every route, as
every caller, in every situation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import attrs
import pytest
import pytest_twisted
import treq
from sqlalchemy import Connection
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred

from installsure.api.health import HealthSources
from installsure.auth.assembly import AuthParts
from installsure.auth.principal import Principal
from installsure.db import Database
from installsure.events import RecordingDomainEventPublisher
from installsure.http import HttpSettings
from installsure.http import build_site as http_site
from installsure.jobs.admin import QueueAdmin
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from installsure.service import api_router
from tests.authz.matrix import CALLERS, Entry, Situation
from tests.authz.tables import all_entries
from tests.db.conftest import database, make_database
from tests.db.helpers import within
from tests.fixtures.redis import RedisServerProcess
from tests.projects.helpers import (
    OPERATOR_SECRET,
    add_membership,
    insert_project,
    insert_user,
    start_auth,
    token_for,
)

__all__ = ["database", "make_database"]

@attrs.define
class Site:
    base: str
    routes: list[tuple[str, str]]
    database: Database
    auth: AuthParts
    users: dict[str, Principal] = attrs.field(factory=dict)


@pytest.fixture
def site(database: Database, redis_server: RedisServerProcess) -> Iterator[Site]:
    """The production route table (installsure.service.api_router plus the HTTP
    layer's own routes) on a free port, with the test authenticator."""
    redis = RedisService(RedisTarget.from_url(redis_server.url), key_prefix="t:")
    redis.startService()
    pytest_twisted.blockon(within(redis.when_connected(5)))
    queue = JobQueue(redis, JobRegistry(), JobsSettings(queues={"email-send": QueueSettings()}))
    auth = start_auth(database, redis)
    router = api_router(redis, HealthSources(), QueueAdmin(queue), database, auth,
                        events=RecordingDomainEventPublisher())
    served = http_site(router, HttpSettings(rate_limit_enabled=False), environment="test",
                       authenticate=auth.authenticator)
    port = reactor.listenTCP(0, served, interface="127.0.0.1")  # type: ignore[attr-defined]
    routes = [(r.method, r.path) for r in served.api.router.routes]
    try:
        yield Site(f"http://127.0.0.1:{port.getHost().port}", routes, database, auth)
    finally:
        pytest_twisted.blockon(port.stopListening())
        pytest_twisted.blockon(maybeDeferred(auth.service.stopService))
        queue.status.stop()
        pytest_twisted.blockon(redis.stopService())


def test_every_route_has_an_entry_and_every_entry_a_route(site: Site) -> None:
    """A route without an entry in the matrix (or an entry whose route went) fails:
    whoever adds a route adds its row to tests/authz/tables/."""
    entries = {e.key for e in all_entries()}
    assert len(entries) == len(all_entries()), "a route has two entries"
    missing = sorted(set(site.routes) - entries)
    stale = sorted(entries - set(site.routes))
    assert missing == [], f"routes without an authorization matrix entry: {missing}"
    assert stale == [], f"matrix entries for routes that do not exist: {stale}"


def _seed(c: Connection, owner: Principal | None, stranger: Principal,
          name: str) -> Situation:
    """A project (owned by ``owner``, or by ``stranger`` for "other") with an editor,
    and an outsider who belongs to nothing."""
    project_owner = owner if owner is not None else stranger
    project_id = insert_project(c, project_owner, name=f"{name} {uuid.uuid4()}")
    editor = insert_user(c, role="member")
    add_membership(c, project_id, editor, "editor")
    outsider = insert_user(c, role="member")
    return Situation(name, project_id, editor.id, outsider.id)


def _nowhere(c: Connection, name: str) -> Situation:
    outsider = insert_user(c, role="member")
    return Situation(name, str(uuid.uuid4()), str(uuid.uuid4()), outsider.id)


async def _fresh_token(site: Site, caller: str) -> str:
    """An access token of a session of its own, so that one call (a logout, say) cannot
    change what the next one gets."""
    return await token_for(site.database, site.auth, site.users[caller])


async def _call(site: Site, entry: Entry, caller: str, situation: Situation) -> int:
    path = entry.path
    for name, value in entry.params(situation).items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"{entry.key}: no value for a path parameter of {path}"
    headers = {}
    if caller == "operator":
        headers["Authorization"] = f"Bearer {OPERATOR_SECRET}"
    elif caller != "anonymous":
        headers["Authorization"] = f"Bearer {await _fresh_token(site, caller)}"
    data = None
    if entry.body is not None:
        data = json.dumps(entry.body(situation)).encode()
        headers["Content-Type"] = "application/json"
    response = await within(treq.request(entry.method, site.base + path, headers=headers,
                                         data=data, persistent=False))
    await within(response.content())
    return int(response.code)


async def _situation(site: Site, entry: Entry, caller: str, name: str) -> Situation:
    def seed(c: Connection) -> Situation:
        if name == "own":
            made = _seed(c, site.users[caller], insert_user(c), name)
        elif name == "other":
            made = _seed(c, None, insert_user(c), name)
        else:
            made = _nowhere(c, name)
        if entry.prepare is not None:
            made = attrs.evolve(made, extras=dict(entry.prepare(c, made)))
        return made

    return await site.database.run(seed)


@pytest_twisted.ensureDeferred
async def test_every_caller_gets_the_expected_status_everywhere(site: Site) -> None:
    """Each route × each caller (anonymous, every global role, the operator) × each
    situation (own project, someone else's, none) answers the status of its table;
    every difference is listed."""

    def users(c: Connection) -> dict[str, Principal]:
        return {role: insert_user(c, role=role) for role in CALLERS
                if role not in ("anonymous", "operator")}

    site.users = await site.database.run(users)
    by_key = {e.key: e for e in all_entries()}
    wrong: list[str] = []
    checked = 0
    for key in site.routes:
        entry = by_key.get(key)
        if entry is None:
            continue  # reported by the test above
        for situation_name, expected in entry.expect.items():
            for caller in CALLERS:
                if caller not in expected:
                    continue  # e.g. anonymous and the operator own no project
                situation = await _situation(site, entry, caller, situation_name)
                got = await _call(site, entry, caller, situation)
                checked += 1
                if got != expected[caller]:
                    wrong.append(f"{entry.method} {entry.path} as {caller} ({situation_name}): "
                                 f"expected {expected[caller]}, got {got}")
    assert wrong == [], "\n".join(["statuses differing from the matrix:", *wrong])
    assert checked > 100
