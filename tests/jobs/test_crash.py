"""kill -9 of worker processes mid-job: nothing is lost, dead workers' jobs run again fast."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess
from tests.jobs.conftest import sleep, wait_until
from tests.jobs.worker_child import Work, build

ROOT = Path(__file__).resolve().parents[2]


def spawn(url: str, worker_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.jobs.worker_child", url, worker_id],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )


def wait_ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "ready", f"worker child did not start: {line!r}"


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_kill_nine_loses_nothing(redis_server: RedisServerProcess) -> None:
    """1,000 jobs, two worker processes, three kill -9s mid-run (each replaced): every
    job completes at least once, none is lost or dead, and the jobs a killed worker
    held start again within 5 s."""
    redis = RedisService(RedisTarget.from_url(redis_server.url), key_prefix="t:")
    redis.startService()
    _, queue = build(redis)
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        await queue.enqueue_bulk("work", [Work(i) for i in range(1000)])
        for name in ("w0", "w1"):
            children[name] = spawn(redis_server.url, name)
        for child in children.values():
            await threads.deferToThread(wait_ready, child)
        keys = queue.keys("crash")
        recoveries: list[float] = []
        async def held_by(victim: str) -> list[str]:
            return [
                job_id for job_id in await redis.execute("ZRANGE", keys.base + ":active", 0, -1)
                if (await queue.get("crash", job_id)).worker == victim
            ]

        for kill in range(3):
            await sleep(0.7)
            victim = f"w{kill % 2}" if kill < 2 else "w2"
            # Kill it mid-run: on a loaded machine a worker just started may need a moment
            # longer before its first claim.
            await wait_until(lambda victim=victim: held_by(victim), timeout=10, interval=0.05)
            held = await held_by(victim)
            children.pop(victim).kill()
            killed_at = time.monotonic()
            replacement = f"w{kill + 2}"
            children[replacement] = spawn(redis_server.url, replacement)
            assert held, f"{victim} held no jobs when killed"

            async def rerun(held: list[str] = held, victim: str = victim) -> bool:
                """Every job the victim held is running elsewhere or done."""
                for job_id in held:
                    record = await queue.get("crash", job_id)
                    if record.state != "completed" and (
                        record.state != "active" or record.worker == victim
                    ):
                        return False
                return True

            await wait_until(rerun, timeout=8, interval=0.05)
            recoveries.append(time.monotonic() - killed_at)
            await threads.deferToThread(wait_ready, children[replacement])
        await wait_until(
            lambda: queue.stats("crash").addCallback(lambda c: c.completed == 1000), timeout=40
        )
        counts = await queue.stats("crash")
        runs = await redis.execute("HGETALL", "t:runs")
        if isinstance(runs, list):
            runs = dict(zip(runs[::2], runs[1::2], strict=True))
        assert (counts.dead, counts.waiting, counts.active) == (0, 0, 0)
        assert sorted(int(n) for n in runs) == list(range(1000))
        assert all(int(v) >= 1 for v in runs.values())
        assert max(recoveries) < 5.0, recoveries
        print(f"jobs of killed workers started again after {recoveries} s")
    finally:
        for child in children.values():
            child.kill()
            child.wait(5)
        await redis.stopService()
