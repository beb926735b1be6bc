"""Workers against a Redis that goes away or loses replies: results are reported once,
leases lost are handled once, slots stay bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher

from installsure.jobs import metrics
from installsure.jobs.context import JobContext
from installsure.jobs.errors import LeaseLost
from installsure.redis.interfaces import RedisUnavailable
from tests.fixtures.redis import RedisServerProcess
from tests.jobs.conftest import Echo, Harness, sleep, wait_until
from tests.jobs.proxy import ReplyLosingProxy


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def completed(h: Harness, n: int) -> Any:
    return lambda: h.queue.stats("test").addCallback(lambda c: c.completed >= n)


def job_states(h: Harness, job_id: str) -> list[str]:
    return [p["state"] for _, p in h.events.events if p.get("jobId") == job_id]


async def take_over(h: Harness, job_id: str, token: str) -> None:
    """Give the job's lease to another worker, one that keeps it for a long time."""
    keys = h.queue.keys("test")
    await h.redis.execute("HSET", keys.leases, job_id, token)
    await h.redis.execute("ZADD", keys.base + ":active", "XX", 1e13, job_id)


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


@pytest_twisted.ensureDeferred
async def test_lost_lease_cancels_the_processor_once(harness: Harness) -> None:
    """When the heartbeat finds a running job's lease gone (the job stalled and another
    worker has it), the processor's Deferred is cancelled, its ctx says lease_lost,
    ctx.once refuses to start a step, and the loss is logged and counted once however
    many heartbeats follow."""
    contexts: list[JobContext] = []
    cancelled: list[bool] = []

    def hang(p: Echo, ctx: JobContext) -> defer.Deferred[None]:
        contexts.append(ctx)
        return defer.Deferred(lambda d: cancelled.append(True))

    harness.handlers["echo"] = hang
    warnings: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if str(event.get("log_format", "")).startswith("lease of job"):
            warnings.append(event["job_id"])

    job_id = await harness.queue.enqueue("echo", Echo(1))
    before = counter(metrics.LEASE_LOST, "test")
    globalLogPublisher.addObserver(observe)
    try:
        harness.worker()
        await wait_until(lambda: contexts)
        await take_over(harness, job_id, "other|1|x")
        await wait_until(lambda: cancelled)
        await sleep(0.8)  # three more heartbeats
    finally:
        globalLogPublisher.removeObserver(observe)
    assert contexts[0].lease_lost
    assert warnings == [job_id]
    assert counter(metrics.LEASE_LOST, "test") == before + 1
    effects: list[int] = []
    with pytest.raises(LeaseLost, match="lost its lease"):
        await contexts[0].once("mail", lambda: effects.append(1))
    assert effects == []
    record = await harness.queue.get("test", job_id)
    assert (record.state, record.worker) == ("active", "other")


@pytest_twisted.ensureDeferred
async def test_coroutine_processor_learns_of_the_loss_at_its_next_await(
    harness: Harness,
) -> None:
    """A coroutine processor whose lease is lost gets CancelledError at the await it
    is in, and its later ctx.once steps never run; another worker's ctx.once of the
    same step still runs, since this one never started it."""
    steps: list[str] = []
    seen: list[BaseException] = []
    started: defer.Deferred[None] = defer.Deferred()

    async def process(p: Echo, ctx: JobContext) -> None:
        started.callback(None)
        try:
            await sleep(30)
        except BaseException as e:
            seen.append(e)
            # A processor that swallows the cancel still cannot run the next step.
            try:
                await ctx.once("charge", lambda: steps.append("charge"))
            except LeaseLost as lost:
                seen.append(lost)
            raise

    harness.handlers["echo"] = process
    job_id = await harness.queue.enqueue("echo", Echo(1))
    harness.worker()
    await started
    await take_over(harness, job_id, "o|1|x")
    await wait_until(lambda: len(seen) == 2)
    assert isinstance(seen[0], defer.CancelledError)
    assert isinstance(seen[1], LeaseLost)
    assert steps == []
    effect_key = harness.queue.keys("test").effect(job_id, "charge")
    assert await harness.redis.execute("EXISTS", effect_key) == 0


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_results_keep_their_slots_through_a_redis_restart(
    harness_factory: Any, redis_server: RedisServerProcess
) -> None:
    """Redis is away for 4 s while short jobs run: finished jobs waiting to be reported
    keep their slots, so the worker never holds more than concurrency + one claim batch
    of leases (5 + 2 here), and the moment Redis is back the waiting results are
    reported (within 2 s: a reconnect, not the grown outage pause of up to 5 s)."""

    async def work(p: Echo, ctx: JobContext) -> int:
        await sleep(0.01)
        return p.value

    harness: Harness = harness_factory(keep_completed_count=5000, jobs={"batch_size": 2})
    harness.handlers["echo"] = work
    await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(1500)], attempts=10)
    leases = harness.queue.keys("test").leases
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            try:
                tokens = await harness.redis.execute("HVALS", leases)
                peak = max(peak, sum(1 for t in tokens if t.startswith("solo|")))
            except RedisUnavailable:
                pass
            await sleep(0.01)

    harness.worker(worker_id="solo")
    await wait_until(completed(harness, 50))
    sampler = defer.ensureDeferred(sample())
    try:
        before = (await harness.queue.stats("test")).completed
        redis_server.stop()
        await sleep(4.0)
        redis_server.start()
        back = reactor.seconds()
        await wait_until(completed(harness, before + 1), timeout=10, interval=0.01)
        reported_after = reactor.seconds() - back
        await wait_until(completed(harness, 1500), timeout=30)
    finally:
        sampling = False
        await sampler
    counts = await harness.queue.stats("test")
    assert (counts.completed, counts.dead, counts.active) == (1500, 0, 0)
    assert 0 < peak <= 5 + 2, peak
    assert reported_after < 2.0, reported_after
