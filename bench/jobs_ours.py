"""One benchmark round of our runner (run by bench/jobs.py in a child process).

    python -m bench.jobs_ours REDIS_URL JOBS CONCURRENCY SINGLE_JOBS

Enqueues SINGLE_JOBS jobs one ``enqueue`` at a time with CONCURRENCY calls in flight
(into a queue of their own that no worker drains), then JOBS jobs with
``enqueue_bulk``, and drains those with one WorkerService at CONCURRENCY. Prints one
JSON line: enqueue_per_s, enqueue_bulk_per_s, drain_per_s, wait_p50_ms, wait_p99_ms, and
for each phase (enqueue, enqueue_bulk, drain) the CPU µs per job of this process
(``<phase>_cpu_us``) and of the redis-server (``<phase>_redis_cpu_us``).
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


async def redis_cpu(redis: RedisService) -> float:
    """CPU seconds the redis-server has used (user + system, its main thread)."""
    info = await redis.execute("INFO", "cpu")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_user_main_thread"]) + float(fields["used_cpu_sys_main_thread"])


async def enqueue_one_by_one(queue: JobQueue, jobs: int, concurrency: int) -> float:
    """Seconds to enqueue ``jobs`` jobs by single calls, ``concurrency`` in flight."""
    next_n = 0

    async def lane() -> None:
        nonlocal next_n
        while next_n < jobs:
            n, next_n = next_n, next_n + 1
            await queue.enqueue("single", Noop(n))

    started = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(lane()) for _ in range(concurrency)])
    return time.perf_counter() - started


async def run(url: str, jobs: int, concurrency: int, single_jobs: int) -> dict[str, Any]:
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
    registry.register(JobType("single", Noop, noop, "single"))
    settings = JobsSettings(
        queues={"bench": QueueSettings(concurrency=concurrency), "single": QueueSettings()},
        job_events=False,
    )
    queue = JobQueue(redis, registry, settings, NullJobEventPublisher())
    # Warm-up, not measured: connections made, scripts loaded (BullMQ's does the same).
    await enqueue_one_by_one(queue, 1000, concurrency)
    cpu = CpuMeter(redis)
    await cpu.start()
    single_s = await enqueue_one_by_one(queue, single_jobs, concurrency)
    single_cpu = await cpu.lap(single_jobs)
    payloads = [Noop(i) for i in range(jobs)]
    started = time.perf_counter()
    await queue.enqueue_bulk("noop", payloads)
    enqueue_s = time.perf_counter() - started
    bulk_cpu = await cpu.lap(jobs)

    worker = WorkerService(queue, queues=["bench"])
    started = time.perf_counter()
    worker.startService()
    await done
    # Drained means Redis has accepted every completion, not just that processors ran.
    while (await queue.stats("bench")).active:
        await task.deferLater(reactor, 0.001)
    drain_s = time.perf_counter() - started
    drain_cpu = await cpu.lap(jobs)
    await worker.stopService()
    await redis.stopService()
    return {
        "enqueue_per_s": single_jobs / single_s,
        "enqueue_bulk_per_s": jobs / enqueue_s,
        "drain_per_s": jobs / drain_s,
        "wait_p50_ms": percentile(waits, 50) * 1000,
        "wait_p99_ms": percentile(waits, 99) * 1000,
        "enqueue_cpu_us": single_cpu[0], "enqueue_redis_cpu_us": single_cpu[1],
        "enqueue_bulk_cpu_us": bulk_cpu[0], "enqueue_bulk_redis_cpu_us": bulk_cpu[1],
        "drain_cpu_us": drain_cpu[0], "drain_redis_cpu_us": drain_cpu[1],
    }


class CpuMeter:
    """CPU time of this process and of the redis-server, phase by phase."""

    def __init__(self, redis: RedisService) -> None:
        self._redis = redis
        self._ours = 0.0
        self._theirs = 0.0

    async def start(self) -> None:
        self._ours, self._theirs = time.process_time(), await redis_cpu(self._redis)

    async def lap(self, jobs: int) -> tuple[float, float]:
        """µs per job of ours and of Redis since the last lap."""
        ours, theirs = time.process_time(), await redis_cpu(self._redis)
        spent = ((ours - self._ours) / jobs * 1e6, (theirs - self._theirs) / jobs * 1e6)
        self._ours, self._theirs = ours, theirs
        return spent


def main() -> None:
    url, jobs, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    single_jobs = int(sys.argv[4])
    result: dict[str, Any] = {}

    async def go() -> None:
        result.update(await run(url, jobs, concurrency, single_jobs))

    d = defer.ensureDeferred(go())
    d.addErrback(lambda f: (f.printTraceback(file=sys.stderr), result.update(error=1)))
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if "error" in result:
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
