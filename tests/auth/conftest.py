"""The auth routes served for real: a listening site over a private Redis and a real
database (SQLite and PostgreSQL), with cheap argon2 parameters unless a test asks."""

from __future__ import annotations

import json as json_module
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
import treq
from attrs import define, evolve
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from installsure.api.auth import auth_router
from installsure.api.queue import queue_router
from installsure.api.users import users_router
from installsure.auth.assembly import AuthParts, build_auth
from installsure.auth.settings import AuthSettings
from installsure.db.service import Database
from installsure.http import HttpSettings, RateLimiter, Router, build_site, rate_rules
from installsure.jobs.admin import QueueAdmin
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess

SECRET = "auth-tests-operator-secret"
#: The password test accounts register with.
PASSWORD = "Correct-Horse-9!"
#: argon2 at its floor: the tests are about behaviour, not cost.
CHEAP = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}
#: Rate limits out of the way, unless a test sets its own.
GENEROUS = HttpSettings(rate_limit_default="100000/60",
                        rate_limit_failed_auth="100000/60",
                        rate_limits={"login": "100000/60", "login_account": "100000/60"})


@define
class Answer:
    status: int
    body: Any
    headers: Any

    @property
    def data(self) -> Any:
        return self.body["data"]


@define
class Stack:
    """One server process's worth of auth: its parts, database and base URL."""

    auth: AuthParts
    database: Database
    redis: RedisService
    base: str
    settings: AuthSettings

    async def call(self, method: str, path: str, json: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": sent, "persistent": False}
        if json is not None:
            kwargs["json"] = json
        response = await treq.request(method, self.base + path, **kwargs)
        text = await response.text()
        return Answer(response.code, json_module.loads(text) if text else None,
                      response.headers)

    async def register(self, email: str, password: str = PASSWORD,
                       name: str = "Someone") -> Answer:
        return await self.call("POST", "/api/auth/register",
                               {"email": email, "password": password, "name": name})

    async def login(self, email: str, password: str = PASSWORD,
                    headers: dict[str, str] | None = None) -> Answer:
        return await self.call("POST", "/api/auth/login",
                               {"email": email, "password": password}, headers=headers)


MakeStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
def make_stack(
    redis_server: RedisServerProcess, database_url: str,
) -> Iterator[MakeStack]:
    """Build listening stacks; all share the test's Redis and database (as processes
    of one deployment do) and each has its own Redis client, caches and hasher."""
    started: list[Callable[[], Any]] = []

    async def make(http: HttpSettings = GENEROUS, **auth_settings: Any) -> Stack:
        settings = AuthSettings(jwt_secret="j" * 10 + "test-signing-key-0123456789abcdef",
                                api_secret=SECRET, **{**CHEAP, **auth_settings})
        redis = RedisService(RedisTarget.from_url(redis_server.url), command_timeout=2.0,
                             key_prefix="t:")
        redis.startService()
        await redis.when_connected(5)
        database = Database(database_url, auto_migrate=True)
        database.startService()
        await database.started()
        limiter = RateLimiter(redis, rate_rules(http)) if http.rate_limit_enabled else None
        auth = build_auth(settings, redis=redis, database=database, limiter=limiter,
                          reactor=reactor)
        auth.service.startService()
        queue = JobQueue(redis, JobRegistry(),
                         JobsSettings(queues={"email-send": QueueSettings()}))
        router = Router()
        router.include(auth_router(auth.accounts))
        router.include(users_router(auth.accounts, auth.admin))
        router.include(queue_router(QueueAdmin(queue)))
        site = build_site(router, http, environment="test", rate_limiter=limiter,
                          authenticate=auth.authenticator)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]

        def stop() -> None:
            pytest_twisted.blockon(port.stopListening())
            pytest_twisted.blockon(auth.service.stopService())
            queue.status.stop()
            pytest_twisted.blockon(database.stopService())
            pytest_twisted.blockon(redis.stopService())

        started.append(stop)
        stack = Stack(auth, database, redis, f"http://127.0.0.1:{port.getHost().port}",
                      settings)
        # The revocation subscription is made asynchronously; wait for it, so tests see
        # the steady state of a running process.
        await wait_until(lambda: auth.revocations.subscribed)
        return stack

    yield make
    for stop in reversed(started):
        stop()


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await sleep(0.01)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def stack(make_stack: MakeStack) -> Stack:
    """One stack with the defaults of these tests."""
    return pytest_twisted.blockon(  # type: ignore[no-any-return]
        Deferred.fromCoroutine(make_stack()))  # type: ignore[arg-type]


def with_settings(stack: Stack, **changes: Any) -> AuthSettings:
    return evolve(stack.settings, **changes)
