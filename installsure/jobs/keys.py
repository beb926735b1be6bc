"""Where a queue lives in Redis, and the scripts that change it."""

from __future__ import annotations

from attrs import frozen

from installsure.jobs._lua import SCRIPTS
from installsure.redis.interfaces import LuaScript, RedisCommands

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


class Scripts:
    """Every job script, registered once per Redis client."""

    def __init__(self, redis: RedisCommands) -> None:
        self.enqueue = redis.script("jobs.enqueue", SCRIPTS["enqueue"])
        self.claim = redis.script("jobs.claim", SCRIPTS["claim"])
        self.complete = redis.script("jobs.complete", SCRIPTS["complete"])
        self.fail = redis.script("jobs.fail", SCRIPTS["fail"])
        self.heartbeat = redis.script("jobs.heartbeat", SCRIPTS["heartbeat"])
        self.sweep = redis.script("jobs.sweep", SCRIPTS["sweep"])
        self.release = redis.script("jobs.release", SCRIPTS["release"])
        self.progress = redis.script("jobs.progress", SCRIPTS["progress"])
        self.counts = redis.script("jobs.counts", SCRIPTS["counts"])
        self.list = redis.script("jobs.list", SCRIPTS["list"])
        self.retry = redis.script("jobs.retry", SCRIPTS["retry"])
        self.retry_dead = redis.script("jobs.retry_dead", SCRIPTS["retry_dead"])
        self.remove = redis.script("jobs.remove", SCRIPTS["remove"])
        self.purge = redis.script("jobs.purge", SCRIPTS["purge"])

    def all(self) -> list[LuaScript]:
        return [v for v in vars(self).values() if not isinstance(v, str)]
