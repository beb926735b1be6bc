"""A worker process for the kill -9 test: ``python -m tests.jobs.worker_child URL ID``.

Runs a WorkerService for the queue ``crash`` whose jobs sleep a little and count their
runs in the hash ``t:runs`` (job value → runs). Prints ``ready`` once it is started.
"""

from __future__ import annotations

import random
import sys

import attrs
from twisted.internet import reactor, task

from installsure.jobs.context import JobContext
from installsure.jobs.events import NullJobEventPublisher
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.worker import WorkerService
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget


@attrs.frozen
class Work:
    n: int


SETTINGS = JobsSettings(
    queues={"crash": QueueSettings(attempts=5, concurrency=10, backoff="fixed",
                                   backoff_delay=0.1, max_stalls=10)},
    lease_ttl=1.0, heartbeat_interval=0.25, liveness_ttl=1.0, sweeper_interval=0.25,
    idle_wait=1.0,
)


def build(redis: RedisService) -> tuple[JobRegistry, JobQueue]:
    registry = JobRegistry()

    async def run(payload: Work, ctx: JobContext) -> int:
        await task.deferLater(reactor, random.uniform(0.05, 0.15))
        await redis.execute("HINCRBY", "t:runs", str(payload.n), 1)
        return payload.n

    registry.register(JobType("work", Work, run, "crash"))
    return registry, JobQueue(redis, registry, SETTINGS, NullJobEventPublisher())


def main(url: str, worker_id: str) -> None:
    redis = RedisService(RedisTarget.from_url(url), command_timeout=5.0, key_prefix="t:")
    redis.startService()
    _, queue = build(redis)
    service = WorkerService(queue, worker_id=worker_id)
    service.startService()
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
