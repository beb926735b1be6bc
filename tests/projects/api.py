"""The project routes served on a real socket, over a real database and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import deferLater

from installsure.api.projects import projects_router
from installsure.auth.assembly import AuthParts
from installsure.auth.interfaces import MEMBERSHIP_CHANGED_CHANNEL
from installsure.auth.membership import MembershipSignals
from installsure.auth.principal import Principal
from installsure.db import Database
from installsure.db.projects import DeletedFile
from installsure.events import RecordingDomainEventPublisher
from installsure.http import HttpSettings, build_site
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.db.helpers import within
from tests.fixtures.redis import RedisServerProcess
from tests.projects.helpers import bearer, insert_user, start_auth, token_for


@attrs.frozen
class Answer:
    status: int
    body: Any
    headers: Any

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def data(self) -> Any:
        return self.body["data"]

    def fields(self) -> list[str]:
        """The fields a VALIDATION_ERROR names, sorted."""
        return sorted(d["field"] for d in self.body.get("details", ()))


@attrs.define
class ProjectsApi:
    """A client of the served routes plus the parts behind them, for assertions."""

    base: str
    database: Database
    auth: AuthParts
    events: RecordingDomainEventPublisher
    redis: RedisService
    deleted_files: list[tuple[str, Sequence[DeletedFile]]]
    signals: list[dict[str, Any]]

    async def user(self, role: str = "member", **kw: Any) -> tuple[Principal, str]:
        """A new user row; (its principal, a bearer token for it)."""
        principal = await self.database.run(lambda c: insert_user(c, role=role, **kw))
        return principal, await token_for(self.database, self.auth, principal)

    async def call(
        self, method: str, path: str, token: str | None = None, body: Any = None, *,
        headers: dict[str, str] | None = None, raw: bytes | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent.update(bearer(token))
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        response = await within(treq.request(method, self.base + path, data=data,
                                             headers=sent, persistent=False))
        content = await within(response.content())
        parsed = json.loads(content) if content else None
        return Answer(response.code, parsed, response.headers)

    async def signal(self, expected: dict[str, Any]) -> None:
        """Wait (up to 10 s) until the membership signal ``expected`` arrived through Redis."""
        waited = 0.0
        while expected not in self.signals:
            assert waited < 10.0, f"no signal {expected} within 10 s: {self.signals}"
            await deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]
            waited += 0.02

    async def create(self, token: str, **fields: Any) -> Answer:
        fields.setdefault("name", f"Project {len(self.events.events)}-{id(fields)}")
        answer = await self.call("POST", "/api/projects", token, fields)
        assert answer.status == 201, answer.body
        return answer


@pytest.fixture
def api(database: Database, redis_server: RedisServerProcess) -> Iterator[ProjectsApi]:
    """The project routes on a free port, authenticating with the server's real access
    tokens, with a recording event publisher, a hook that records deleted files, and a
    Redis subscriber recording membership signals."""
    redis = RedisService(RedisTarget.from_url(redis_server.url), key_prefix="t:")
    redis.startService()
    pytest_twisted.blockon(within(redis.when_connected(5)))
    signals: list[dict[str, Any]] = []
    subscription = pytest_twisted.blockon(within(redis.subscribe(
        MEMBERSHIP_CHANGED_CHANNEL, lambda _channel, message: signals.append(json.loads(message))
    )))
    events = RecordingDomainEventPublisher()
    deleted: list[tuple[str, Sequence[DeletedFile]]] = []
    auth = start_auth(database, redis)
    router = projects_router(database, events=events, signals=MembershipSignals(redis),
                             files_deleted=lambda pid, gone: deleted.append((pid, gone)))
    site = build_site(router, HttpSettings(rate_limit_enabled=False), environment="test",
                      authenticate=auth.authenticator)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield ProjectsApi(f"http://127.0.0.1:{port.getHost().port}", database, auth, events,
                          redis, deleted, signals)
    finally:
        pytest_twisted.blockon(port.stopListening())
        pytest_twisted.blockon(maybeDeferred(auth.service.stopService))
        pytest_twisted.blockon(subscription.cancel())
        pytest_twisted.blockon(redis.stopService())
