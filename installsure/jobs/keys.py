"""Where a queue lives in Redis (the layout is in ``installsure.jobs.scripts``)."""

from __future__ import annotations

from attrs import frozen

from installsure.redis.interfaces import RedisCommands

STATE_SETS: dict[str, str] = {
    "waiting": ":wait",
    "active": ":active",
    "completed": ":completed",
    "failed": ":retry",
    "delayed": ":delayed",
    "dead": ":dead",
}
"""Job state → suffix of the sorted set holding jobs in that state."""

STATES = tuple(STATE_SETS)


@frozen
class QueueKeys:
    """The keys of one queue. Every key starts with ``base``, whose braces are a Redis
    Cluster hash tag: all keys of a queue land in one slot, so one script may use them."""

    queue: str
    base: str

    @classmethod
    def for_queue(cls, redis: RedisCommands, queue: str) -> QueueKeys:
        return cls(queue, "{" + redis.key("q", queue) + "}")

    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"

    @property
    def leases(self) -> str:
        return f"{self.base}:leases"

    @property
    def marker(self) -> str:
        return f"{self.base}:marker"

    def effect(self, idempotency_key: str, step: str) -> str:
        return f"{self.base}:effect:{idempotency_key}:{step}"

