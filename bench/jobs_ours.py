"""One benchmark round of our runner (run by bench/jobs.py in a child process).

    python -m bench.jobs_ours REDIS_URL JOBS CONCURRENCY

Prints one JSON line: enqueue_per_s, drain_per_s, wait_p50_ms, wait_p99_ms.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import attrs
from twisted.internet import defer, reactor, task

from installsure.jobs.events import NullJobEventPublisher
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.worker import WorkerService
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget


@attrs.frozen
class Noop:
    n: int


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


async def run(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    redis = RedisService(RedisTarget.from_url(url), command_timeout=30.0, key_prefix="bench:")
    redis.startService()
    await redis.when_connected()
    waits: list[float] = []
    done: defer.Deferred[None] = defer.Deferred()

    def noop(payload: Noop, ctx: Any) -> None:
        waits.append(time.time() - ctx.created_at)
        if len(waits) == jobs:
            done.callback(None)

    registry = JobRegistry()
    registry.register(JobType("noop", Noop, noop, "bench"))
    settings = JobsSettings(
        queues={"bench": QueueSettings(concurrency=concurrency)}, job_events=False
    )
    queue = JobQueue(redis, registry, settings, NullJobEventPublisher())
    payloads = [Noop(i) for i in range(jobs)]
    started = time.perf_counter()
    await queue.enqueue_bulk("noop", payloads)
    enqueue_s = time.perf_counter() - started

    worker = WorkerService(queue)
    started = time.perf_counter()
    worker.startService()
    await done
    # Drained means Redis has accepted every completion, not just that processors ran.
    while (await queue.stats("bench")).active:
        await task.deferLater(reactor, 0.001)
    drain_s = time.perf_counter() - started
    await worker.stopService()
    await redis.stopService()
    return {
        "enqueue_per_s": jobs / enqueue_s,
        "drain_per_s": jobs / drain_s,
        "wait_p50_ms": percentile(waits, 50) * 1000,
        "wait_p99_ms": percentile(waits, 99) * 1000,
    }


def main() -> None:
    url, jobs, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    result: dict[str, Any] = {}

    async def go() -> None:
        result.update(await run(url, jobs, concurrency))

    d = defer.ensureDeferred(go())
    d.addErrback(lambda f: (f.printTraceback(file=sys.stderr), result.update(error=1)))
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if "error" in result:
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
