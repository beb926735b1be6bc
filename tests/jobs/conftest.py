"""Fixtures of the job runner tests: a RedisService on the private redis-server, a
registry of test job types and a JobQueue over them."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from installsure.jobs.events import RecordingJobEventPublisher
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.worker import WorkerService
from installsure.redis.client import RedisService
from installsure.redis.interfaces import RedisUnavailable
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess


@attrs.frozen
class Echo:
    """Payload of the test job types."""

    value: int
    note: str = ""


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds)


def wait_until(check: Any, timeout: float = 5.0, interval: float = 0.02) -> defer.Deferred[None]:
    """Fires when ``check()`` (may return a Deferred) is true; fails after ``timeout``."""

    async def poll() -> None:
        deadline = reactor.seconds() + timeout
        while True:
            value = check()
            if inspect.iscoroutine(value):
                value = defer.ensureDeferred(value)
            if isinstance(value, defer.Deferred):
                try:
                    value = await value
                except RedisUnavailable:  # e.g. while a restarted Redis comes back
                    value = False
            if value:
                return
            if reactor.seconds() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            await sleep(interval)

    return defer.ensureDeferred(poll())


@attrs.define
class Harness:
    """Everything a test needs: redis, registry, queue, and handlers to plug in."""

    redis: RedisService
    registry: JobRegistry
    settings: JobsSettings
    queue: JobQueue
    events: RecordingJobEventPublisher
    handlers: dict[str, Any] = attrs.field(factory=dict)
    services: list[WorkerService] = attrs.field(factory=list)

    def worker(self, **kw: Any) -> WorkerService:
        service = WorkerService(self.queue, **kw)
        service.startService()
        self.services.append(service)
        return service

    def stop(self, service: WorkerService) -> defer.Deferred[None]:
        self.services.remove(service)
        return service.stopService()


def make_settings(**queue_kw: Any) -> JobsSettings:
    qs = QueueSettings(
        attempts=3, backoff="fixed", backoff_delay=0.05, concurrency=5, timeout=10.0,
        **queue_kw,
    )
    return JobsSettings(
        queues={"test": qs, "other": QueueSettings(concurrency=2)},
        lease_ttl=1.0, heartbeat_interval=0.25, liveness_ttl=1.0, sweeper_interval=0.2,
        idle_wait=1.0, status_interval=0.1,
    )


def build_harness(
    redis_server: RedisServerProcess, settings: JobsSettings, url: str | None = None
) -> Harness:
    """``url``: reach the server another way (through a proxy) than its own URL."""
    redis = RedisService(
        RedisTarget.from_url(url or redis_server.url), command_timeout=2.0, key_prefix="t:"
    )
    redis.startService()
    registry = JobRegistry()
    handlers: dict[str, Any] = {}

    def dispatch(name: str) -> Any:
        def run(payload: Echo, ctx: Any) -> object:
            return handlers[name](payload, ctx)

        return run

    for name in ("echo", "slow", "flaky"):
        registry.register(JobType(name, Echo, dispatch(name), "test"))
    registry.register(JobType("other", Echo, dispatch("other"), "other"))
    events = RecordingJobEventPublisher()
    queue = JobQueue(redis, registry, settings, events)
    harness = Harness(redis, registry, settings, queue, events, handlers)
    handlers["echo"] = lambda p, ctx: p.value
    handlers["other"] = lambda p, ctx: p.value
    return harness


@pytest.fixture
def harness_factory(redis_server: RedisServerProcess) -> Iterator[Any]:
    """Builds harnesses with given settings; stops their workers and clients after."""
    made: list[Harness] = []

    def make(url: str | None = None, jobs: dict[str, Any] | None = None,
             **queue_kw: Any) -> Harness:
        """``jobs``: JobsSettings fields to change (the lease, the heartbeat, ...)."""
        settings = make_settings(**queue_kw)
        if jobs:
            settings = attrs.evolve(settings, **jobs)
        h = build_harness(redis_server, settings, url)
        made.append(h)
        return h

    yield make
    for h in made:
        h.queue.status.stop()
        for service in list(h.services):
            pytest_twisted.blockon(service.stopService())
        pytest_twisted.blockon(h.redis.stopService())


@pytest.fixture
def harness(harness_factory: Any) -> Harness:
    h: Harness = harness_factory()
    return h
