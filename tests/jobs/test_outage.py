"""Workers against a Redis that goes away or loses replies: results are reported once,
leases lost are handled once, slots stay bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from installsure.jobs import metrics
from tests.fixtures.redis import RedisServerProcess
from tests.jobs.conftest import Echo, Harness, wait_until
from tests.jobs.proxy import ReplyLosingProxy


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def job_states(h: Harness, job_id: str) -> list[str]:
    return [p["state"] for _, p in h.events.events if p.get("jobId") == job_id]


@pytest.fixture
def proxy(redis_server: RedisServerProcess) -> Iterator[ReplyLosingProxy]:
    """A proxy in front of the private redis-server that loses replies when told."""
    p = ReplyLosingProxy(redis_server.port)
    yield p
    pytest_twisted.blockon(p.close())


@pytest_twisted.ensureDeferred
async def test_completion_whose_reply_was_lost_counts_once(
    harness_factory: Any, proxy: ReplyLosingProxy
) -> None:
    """Redis applies a completion and its reply is lost (the connection dies right
    after): the worker sends the same report again and takes the answer as a success:
    no lease-lost warning or count, one completed count and one completed event."""
    h: Harness = harness_factory(url=proxy.url)
    gate: defer.Deferred[int] = defer.Deferred()
    h.handlers["echo"] = lambda p, ctx: gate
    job_id = await h.queue.enqueue("echo", Echo(1))
    h.worker()
    await wait_until(lambda: "active" in job_states(h, job_id))
    lost_before = counter(metrics.LEASE_LOST, "test")
    done_before = counter(metrics.COMPLETED, "test", "echo")
    proxy.lose_reply_to(h.queue.scripts.complete.sha.encode())
    gate.callback(5)
    await wait_until(lambda: "completed" in job_states(h, job_id), timeout=10)
    assert proxy.lost == 1
    record = await h.queue.get("test", job_id)
    assert (record.state, record.result) == ("completed", 5)
    assert counter(metrics.LEASE_LOST, "test") == lost_before
    assert counter(metrics.COMPLETED, "test", "echo") == done_before + 1
    assert job_states(h, job_id).count("completed") == 1


@pytest_twisted.ensureDeferred
async def test_failure_whose_reply_was_lost_spends_one_attempt(
    harness_factory: Any, proxy: ReplyLosingProxy
) -> None:
    """The same for a failed attempt: reported again after the lost reply, it spends one
    attempt, not two, and is not called refused."""
    h: Harness = harness_factory(url=proxy.url)
    runs: list[int] = []

    def fails_once(p: Echo, ctx: Any) -> int:
        runs.append(ctx.attempt)
        if ctx.attempt == 1:
            proxy.lose_reply_to(h.queue.scripts.fail.sha.encode())
            raise RuntimeError("first try")
        return ctx.attempt

    h.handlers["echo"] = fails_once
    lost_before = counter(metrics.LEASE_LOST, "test")
    job_id = await h.queue.enqueue("echo", Echo(1))
    h.worker()
    await wait_until(lambda: "completed" in job_states(h, job_id), timeout=10)
    assert proxy.lost == 1
    record = await h.queue.get("test", job_id)
    assert (record.attempts_made, len(record.errors), record.result) == (1, 1, 2)
    assert runs == [1, 2]
    assert counter(metrics.LEASE_LOST, "test") == lost_before
