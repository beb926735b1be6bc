"""A Sentinel master switch while jobs run: nothing lost, no healthy job stalled or run
twice. Real redis-servers: a master, a replica and a Sentinel watching them."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import threads

from installsure.jobs import metrics
from installsure.jobs.context import JobContext
from installsure.jobs.events import NullJobEventPublisher
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.worker import WorkerService
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess
from tests.jobs.conftest import sleep, wait_until
from tests.redis.test_sentinel import _command, _sentinel_for, _wait_until_synced

JOBS = 30


@attrs.frozen
class Step:
    n: int
    seconds: float


def offset(port: int, field: str) -> int:
    info = _command(port, "INFO", "replication").decode()
    return int(info.split(f"{field}:")[1].split()[0])


def switch_master(master: RedisServerProcess, replica: RedisServerProcess) -> None:
    """A slow, planned switch: the master takes no more writes (CLIENT PAUSE), the
    replica catches up with it, and 1.5 s later the master dies and the Sentinel
    promotes the replica: the workers cannot write for longer than a lease."""
    _command(master.port, "CLIENT", "PAUSE", "10000", "WRITE")
    deadline = time.monotonic() + 10
    while offset(replica.port, "slave_repl_offset") < offset(master.port, "master_repl_offset"):
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.01)
    time.sleep(1.5)
    master.kill()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_sentinel_master_switch_kills_no_healthy_job(
    redis_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Two workers, each with its own connections, run 30 jobs of 1.5-2.5 s through a
    Sentinel; the master is switched to its replica while they run, the workers unable
    to write for seconds: every job completes exactly once, none stalls or is dead, and
    no worker loses a lease."""
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    replica = RedisServerProcess(replica_dir)
    replica.start()
    services: list[Any] = []
    try:
        _command(replica.port, "REPLICAOF", "127.0.0.1", str(redis_server.port))
        _wait_until_synced(replica.port)
        with _sentinel_for(redis_server.port, tmp_path) as sentinel:
            def connect() -> RedisService:
                redis = RedisService(
                    RedisTarget.for_sentinels([("127.0.0.1", sentinel)], "mymaster"),
                    command_timeout=1.0, key_prefix="t:",
                )
                redis.startService()
                services.append(redis)
                return redis

            starts: list[int] = []

            async def run(payload: Step, ctx: JobContext) -> int:
                starts.append(payload.n)
                await sleep(payload.seconds)
                return payload.n

            registry = JobRegistry()
            registry.register(JobType("step", Step, run, "failover"))
            settings = JobsSettings(
                queues={"failover": QueueSettings(concurrency=5, max_stalls=3)},
                lease_ttl=1.0, heartbeat_interval=0.25, liveness_ttl=1.0,
                sweeper_interval=0.25, idle_wait=1.0,
            )
            redis = connect()
            queue = JobQueue(redis, registry, settings, NullJobEventPublisher())
            await wait_until(lambda: redis.execute("PING"), timeout=10)
            await queue.enqueue_bulk(
                "step", [Step(n, 1.5 + (n % 5) * 0.25) for n in range(JOBS)]
            )
            lost = metrics.LEASE_LOST.labels("failover")._value.get()
            stalled = metrics.STALLED.labels("failover")._value.get()
            for name in ("a", "b"):
                # A connection of its own, as a process of its own would have: each
                # finds the new master at its own moment.
                own = JobQueue(connect(), registry, settings, NullJobEventPublisher())
                worker = WorkerService(own, worker_id=name)
                worker.startService()
                services.insert(0, worker)
            await wait_until(lambda: len(starts) >= 10, timeout=10)
            await sleep(0.5)
            await threads.deferToThread(switch_master, redis_server, replica)
            await wait_until(
                lambda: queue.stats("failover").addCallback(lambda c: c.completed >= JOBS),
                timeout=40, interval=0.1,
            )
            assert b"role:master" in _command(replica.port, "INFO", "replication")
            counts = await queue.stats("failover")
            assert (counts.completed, counts.dead, counts.active) == (JOBS, 0, 0)
            assert sorted(Counter(starts).items()) == [(n, 1) for n in range(JOBS)]
            records, _ = await queue.list("failover", "completed", per_page=100)
            assert {r.stalls for r in records} == {0}
            assert metrics.LEASE_LOST.labels("failover")._value.get() == lost
            assert metrics.STALLED.labels("failover")._value.get() == stalled
    finally:
        for service in services:
            await service.stopService()
        replica.kill()
