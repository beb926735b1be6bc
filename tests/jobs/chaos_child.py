"""A worker process for the chaos test: ``python -m tests.jobs.chaos_child URL ID``.

Runs a WorkerService for the queue ``chaos`` whose jobs sleep for the seconds their
payload says, with the short lease of issue 11's report (1 s, heartbeat 0.25 s). It
prints, one flushed line each, what the test judges it by:

* ``ready`` once started;
* ``START <n>`` when a processor starts (a job that starts twice ran twice);
* ``LOST <job id>`` when it loses a lease (its processor is cancelled or its result
  refused);
* ``STALLED <count>`` when its sweep counts stalls.
"""

from __future__ import annotations

import sys
from typing import Any

import attrs
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher

from installsure.jobs.context import JobContext
from installsure.jobs.events import NullJobEventPublisher
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.worker import WorkerService
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget


@attrs.frozen
class Long:
    n: int
    seconds: float


SETTINGS = JobsSettings(
    queues={"chaos": QueueSettings(attempts=3, concurrency=5, backoff="fixed",
                                   backoff_delay=0.1, timeout=120.0, max_stalls=3)},
    lease_ttl=1.0, heartbeat_interval=0.25, liveness_ttl=1.0, sweeper_interval=0.25,
    idle_wait=1.0,
)


def build(redis: RedisService) -> JobQueue:
    registry = JobRegistry()

    async def run(payload: Long, ctx: JobContext) -> int:
        print(f"START {payload.n}", flush=True)
        await task.deferLater(reactor, payload.seconds)
        return payload.n

    registry.register(JobType("long", Long, run, "chaos"))
    return JobQueue(redis, registry, SETTINGS, NullJobEventPublisher())


def _report(event: dict[str, Any]) -> None:
    text = str(event.get("log_format", ""))
    if text.startswith("lease of job"):
        print(f"LOST {event['job_id']}", flush=True)
    elif "stalled (their worker stopped renewing leases)" in text:
        print(f"STALLED {event['count']}", flush=True)


def main(url: str, worker_id: str) -> None:
    globalLogPublisher.addObserver(_report)
    redis = RedisService(RedisTarget.from_url(url), command_timeout=2.0, key_prefix="t:")
    redis.startService()
    service = WorkerService(build(redis), worker_id=worker_id)
    service.startService()
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
