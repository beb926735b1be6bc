"""End-to-end life cycle against a real redis-server: enqueue, claim, complete, fail."""

from __future__ import annotations

import pytest_twisted

from installsure.jobs.errors import PermanentError
from tests.jobs.conftest import Echo, Harness, wait_until


@pytest_twisted.ensureDeferred
async def test_jobs_run_and_complete(harness: Harness) -> None:
    """Enqueued jobs are run once each by a worker and end completed with their result."""
    seen: list[int] = []
    harness.handlers["echo"] = lambda p, ctx: seen.append(p.value) or p.value * 2
    ids = await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(20)])
    harness.worker()
    await wait_until(lambda: len(seen) == 20)
    await wait_until(
        lambda: harness.queue.stats("test").addCallback(lambda c: c.completed == 20)
    )
    assert sorted(seen) == list(range(20))
    record = await harness.queue.get("test", ids[3])
    assert record.state == "completed"
    assert record.result == 6


@pytest_twisted.ensureDeferred
async def test_permanent_error_goes_dead(harness: Harness) -> None:
    """A PermanentError skips retries: one attempt, then dead with its error."""
    calls: list[int] = []

    def fail(p: Echo, ctx: object) -> None:
        calls.append(1)
        raise PermanentError("bad file")

    harness.handlers["echo"] = fail
    job_id = await harness.queue.enqueue("echo", Echo(1))
    harness.worker()
    await wait_until(lambda: harness.queue.get("test", job_id).addCallback(
        lambda r: r.state == "dead"))
    record = await harness.queue.get("test", job_id)
    assert calls == [1]
    assert "bad file" in (record.error or "")
    assert record.attempts_made == 1
