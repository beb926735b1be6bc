"""The health checks of the parts the server depends on, as ``/api/health`` runs them
(:mod:`installsure.api.health`, which bounds each in time): each answers a
:class:`CheckResult`, or fails when its part does not answer."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from installsure.api.health import CheckResult
from installsure.db.service import Database
from installsure.jobs.admin import QueueAdmin
from installsure.redis.client import RedisService
from installsure.redis.embedded import EmbeddedRedisService
from installsure.storage.service import Storage


def redis_check(redis: RedisService) -> Deferred[CheckResult]:
    return redis.ping().addCallback(lambda ms: CheckResult(ok=True, latency_ms=ms))


def database_check(database: Database) -> Deferred[CheckResult]:
    if not database.ready:
        return succeed(CheckResult(ok=False, message="schema not ready yet (migrating or "
                                   "waiting for the database)"))
    return database.ping().addCallback(lambda ms: CheckResult(ok=True, latency_ms=ms))


def embedded_redis_check(embedded: EmbeddedRedisService) -> Deferred[CheckResult]:
    details: dict[str, Any] = {"state": embedded.state, "pid": embedded.pid}
    return succeed(CheckResult(ok=embedded.state == "running", message=embedded.error,
                               details=details))


def storage_check(storage: Storage) -> Deferred[CheckResult]:
    """The file store answers (a local one can be written), and how much room is left."""

    def healthy(facts: dict[str, object]) -> CheckResult:
        latency = facts.pop("latencyMs", None)
        return CheckResult(ok=True, latency_ms=latency if isinstance(latency, float) else None,
                           details=facts)

    return storage.health().addCallback(healthy)


def queues_check(admin: QueueAdmin) -> Deferred[CheckResult]:
    def summarize(status: dict[str, Any]) -> CheckResult:
        queues = status["queues"]
        return CheckResult(ok=True, details={
            "waiting": sum(q["waiting"] for q in queues.values()),
            "active": sum(q["active"] for q in queues.values()),
            "dead": sum(q["dead"] for q in queues.values()),
            "paused": sorted(name for name, q in queues.items() if q["isPaused"]),
        })

    return admin.status().addCallback(summarize)
