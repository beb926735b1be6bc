"""The worker service against a real redis-server: retries, timeouts, fencing, drain,
idempotent effects, progress, events, rate limits across workers, Redis outages."""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

from installsure.jobs import metrics
from installsure.jobs.context import JobContext
from installsure.jobs.errors import InvalidPayload, PermanentError, RetryLater, UnknownJobType
from installsure.jobs.events import file_progress_topic, job_topic, status_topic
from tests.fixtures.redis import RedisServerProcess
from tests.jobs.conftest import Echo, Harness, sleep, wait_until


def completed(h: Harness, n: int, queue: str = "test") -> Any:
    return lambda: h.queue.stats(queue).addCallback(lambda c: c.completed >= n)


def in_state(h: Harness, job_id: str, wanted: str) -> Any:
    return lambda: h.queue.get("test", job_id).addCallback(lambda r: r.state == wanted)


@pytest_twisted.ensureDeferred
async def test_failures_retry_with_backoff_then_succeed(harness: Harness) -> None:
    """A failing job is retried after its backoff, with the attempt number growing,
    and completes once the processor succeeds; its error history is kept."""
    attempts: list[int] = []

    def flaky(p: Echo, ctx: JobContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"try {ctx.attempt}")
        return 7

    harness.handlers["echo"] = flaky
    job_id = await harness.queue.enqueue("echo", Echo(1))
    harness.worker()
    await wait_until(in_state(harness, job_id, "completed"))
    record = await harness.queue.get("test", job_id)
    assert attempts == [1, 2, 3]
    assert record.attempts_made == 2
    assert [e["message"] for e in record.errors] == ["RuntimeError: try 1", "RuntimeError: try 2"]
    assert record.result == 7


@pytest_twisted.ensureDeferred
async def test_exhausted_attempts_go_dead(harness: Harness) -> None:
    """After `attempts` failures the job is dead, and dead jobs can be retried by admin."""
    runs: list[int] = []

    def always_fails(p: Echo, ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise ValueError("nope")

    harness.handlers["echo"] = always_fails
    job_id = await harness.queue.enqueue("echo", Echo(1), attempts=2)
    harness.worker()
    await wait_until(in_state(harness, job_id, "dead"))
    assert runs == [1, 2]
    harness.handlers["echo"] = lambda p, ctx: "ok"
    await harness.queue.retry("test", job_id)
    await wait_until(in_state(harness, job_id, "completed"))


@pytest_twisted.ensureDeferred
async def test_retry_later_does_not_spend_an_attempt(harness: Harness) -> None:
    """RetryLater reschedules after its delay and leaves the attempt count alone."""
    seen: list[int] = []

    def later_once(p: Echo, ctx: JobContext) -> str:
        seen.append(ctx.attempt)
        if len(seen) < 3:
            raise RetryLater(0.05, "service busy")
        return "done"

    harness.handlers["echo"] = later_once
    job_id = await harness.queue.enqueue("echo", Echo(1), attempts=1)
    harness.worker()
    await wait_until(in_state(harness, job_id, "completed"))
    assert seen == [1, 1, 1]


@pytest_twisted.ensureDeferred
async def test_timeout_cancels_processor(harness: Harness) -> None:
    """A processor running past its timeout has its Deferred cancelled and the attempt
    fails with a timeout error."""
    cancelled: list[bool] = []

    def hang(p: Echo, ctx: JobContext) -> defer.Deferred[None]:
        return defer.Deferred(lambda d: cancelled.append(True))

    harness.handlers["echo"] = hang
    job_id = await harness.queue.enqueue("echo", Echo(1), attempts=1, timeout=0.2)
    harness.worker()
    await wait_until(in_state(harness, job_id, "dead"))
    record = await harness.queue.get("test", job_id)
    assert cancelled == [True]
    assert record.error == "timed out after 0.2 s"


@pytest_twisted.ensureDeferred
async def test_coroutine_processors_and_progress(harness: Harness) -> None:
    """Coroutine processors work; progress is stored and published on the job topic
    and on the file topic when the payload names a file."""
    import attrs

    from installsure.jobs.registry import JobType

    @attrs.frozen
    class FileJob:
        file_id: str

    async def process(p: FileJob, ctx: JobContext) -> str:
        await ctx.progress(50, "thumbnail")
        await sleep(0.01)
        return p.file_id

    harness.registry.register(JobType("file", FileJob, process, "test"))
    job_id = await harness.queue.enqueue("file", {"file_id": "f-1"})
    harness.worker()
    await wait_until(in_state(harness, job_id, "completed"))
    record = await harness.queue.get("test", job_id)
    assert record.progress == {"percent": 50.0, "stage": "thumbnail"}
    assert (file_progress_topic("f-1"), {"percent": 50.0, "stage": "thumbnail"}) in (
        harness.events.events
    )
    states = [p["state"] for t, p in harness.events.events
              if t == job_topic("test") and p.get("jobId") == job_id]
    assert states[0] == "queued"
    assert states[-1] == "completed"
    assert "active" in states
    await wait_until(lambda: any(t == status_topic("test") for t, _ in harness.events.events))


@pytest_twisted.ensureDeferred
async def test_status_events_are_throttled(harness: Harness) -> None:
    """Queue status goes out at most once per status_interval while counts change."""
    harness.worker()
    started = time.monotonic()
    for i in range(30):
        await harness.queue.enqueue("echo", Echo(i))
        await sleep(0.01)
    await wait_until(completed(harness, 30))
    changing = time.monotonic() - started
    await sleep(0.15)
    statuses = [p for t, p in harness.events.events if t == status_topic("test")]
    # One report per 0.1 s while counts change (the window is ~0.3 s on a quiet machine,
    # longer on a loaded one), and never one per transition (30 jobs make 90 of them).
    assert 2 <= len(statuses) <= min(changing / 0.1 + 3, 29)
    assert statuses[-1]["completed"] == 30


@pytest_twisted.ensureDeferred
async def test_late_result_is_refused(harness: Harness) -> None:
    """When a worker's lease is taken over just as its job finishes, its result is
    refused (or, if the heartbeat noticed first, the processor is cancelled) and the
    lost lease is counted once either way; the job keeps the new owner's state."""
    release: defer.Deferred[int] = defer.Deferred()
    harness.handlers["echo"] = lambda p, ctx: release
    job_id = await harness.queue.enqueue("echo", Echo(1))
    harness.worker()
    await wait_until(in_state(harness, job_id, "active"))
    keys = harness.queue.keys("test")
    before = metrics.LEASE_LOST.labels("test")._value.get()
    await harness.redis.execute("HSET", keys.leases, job_id, "someone-else")
    if not release.called:
        release.callback(5)
    await wait_until(lambda: metrics.LEASE_LOST.labels("test")._value.get() > before)
    await sleep(0.6)  # a few heartbeats, which must not count it again
    assert metrics.LEASE_LOST.labels("test")._value.get() == before + 1
    record = await harness.queue.get("test", job_id)
    assert record.state == "active"
    assert record.result is None


@pytest_twisted.ensureDeferred
async def test_drain_gives_back_unfinished_jobs_with_attempts_intact(harness: Harness) -> None:
    """On stop, jobs that finish within grace complete; the rest go back to the head of
    waiting without spending an attempt and without being marked failed."""
    quick: defer.Deferred[str] = defer.Deferred()
    hangs: list[defer.Deferred[str]] = []

    def run(p: Echo, ctx: JobContext) -> defer.Deferred[str]:
        if p.value == 0:
            return quick
        d: defer.Deferred[str] = defer.Deferred()
        hangs.append(d)
        return d

    harness.handlers["echo"] = run
    ids = await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(3)], attempts=1)
    service = WorkerServiceStarter(harness)(grace=0.3)
    await wait_until(lambda: len(hangs) == 2)
    stopping = harness.stop(service)
    quick.callback("done")
    await stopping
    assert (await harness.queue.get("test", ids[0])).state == "completed"
    for job_id in ids[1:]:
        record = await harness.queue.get("test", job_id)
        assert (record.state, record.attempts_made, record.errors) == ("waiting", 0, [])
    # A late outcome of a given-back job changes nothing.
    hangs[0].callback("late")
    assert (await harness.queue.get("test", ids[1])).state == "waiting"
    # The next worker runs them.
    harness.handlers["echo"] = lambda p, ctx: "second run"
    harness.worker()
    await wait_until(completed(harness, 3))


class WorkerServiceStarter:
    def __init__(self, h: Harness) -> None:
        self.h = h

    def __call__(self, **kw: Any) -> Any:
        return self.h.worker(**kw)


@pytest_twisted.ensureDeferred
async def test_once_prevents_a_second_effect(harness: Harness) -> None:
    """A job that runs twice (at-least-once delivery) performs an effect wrapped in
    ctx.once only once; the second run gets the first run's result."""
    effects: list[int] = []
    runs: list[Any] = []

    async def send(p: Echo, ctx: JobContext) -> Any:
        result = await ctx.once("send-mail", lambda: effects.append(p.value) or "msg-1")
        runs.append(result)
        if len(runs) == 1:
            raise RuntimeError("crashed after sending")
        return result

    harness.handlers["echo"] = send
    job_id = await harness.queue.enqueue("echo", Echo(9), idempotency_key="mail-9")
    harness.worker()
    await wait_until(in_state(harness, job_id, "completed"))
    assert effects == [9]
    assert runs == ["msg-1", "msg-1"]
    # Same idempotency key again: the producer gets the same job, no new effect.
    assert await harness.queue.enqueue("echo", Echo(9), idempotency_key="mail-9") == job_id


@pytest_twisted.ensureDeferred
async def test_bad_payload_refused_at_enqueue(harness: Harness) -> None:
    """A payload that does not match its type fails the caller, listing every problem;
    nothing is written."""
    with pytest.raises(InvalidPayload) as info:
        await harness.queue.enqueue("echo", {"value": "ten", "extra": 1})
    assert "value" in str(info.value)
    assert "extra" in str(info.value)
    with pytest.raises(InvalidPayload, match="job 1"):
        await harness.queue.enqueue_bulk("echo", [Echo(1), {"note": "no value"}])
    with pytest.raises(UnknownJobType, match="echo"):
        await harness.queue.enqueue("nope", {})
    counts = await harness.queue.stats("test")
    assert counts.waiting == 0


@pytest_twisted.ensureDeferred
async def test_unknown_type_on_worker_goes_dead_with_a_reason(harness: Harness) -> None:
    """A claimed job whose type this worker does not know goes dead saying so."""
    job_id = await harness.queue.enqueue("echo", Echo(1))
    await harness.redis.execute("HSET", harness.queue.keys("test").job(job_id), "type", "ghost")
    harness.worker()
    await wait_until(in_state(harness, job_id, "dead"))
    assert "ghost" in ((await harness.queue.get("test", job_id)).error or "")


@pytest_twisted.ensureDeferred
async def test_rate_limit_holds_across_workers(harness_factory: Any) -> None:
    """With a limit of 5 per 0.5 s, two workers together run no more than that."""
    h: Harness = harness_factory(rate_limit_count=5, rate_limit_period=0.5)
    started: list[float] = []
    from twisted.internet import reactor

    h.handlers["echo"] = lambda p, ctx: started.append(reactor.seconds())
    await h.queue.enqueue_bulk("echo", [Echo(i) for i in range(12)])
    h.worker(worker_id="a")
    h.worker(worker_id="b")
    await wait_until(lambda: len(started) == 12, timeout=5)
    started.sort()
    # 12 jobs at 5 per window need three windows: at least two full periods.
    assert started[-1] - started[0] >= 0.9
    for i in range(len(started) - 5):
        assert started[i + 5] - started[i] > 0.3  # never 6 inside one window


@pytest_twisted.ensureDeferred
async def test_idle_worker_wakes_on_enqueue(harness: Harness) -> None:
    """An idle worker blocks on the marker and picks a new job up at once (no polling
    delay, although idle_wait is 1 s)."""
    from twisted.internet import reactor

    done: list[float] = []
    harness.handlers["echo"] = lambda p, ctx: done.append(reactor.seconds())
    harness.worker()
    await sleep(0.2)  # worker is now blocked
    sent = reactor.seconds()
    await harness.queue.enqueue("echo", Echo(1))
    await wait_until(lambda: done)
    assert done[0] - sent < 0.3


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_redis_restart_loses_nothing(
    harness: Harness, redis_server: RedisServerProcess
) -> None:
    """Redis restarts (AOF) mid-run: workers pause with one warning per activity rather
    than a loop of errors, resume, and every job completes."""
    warnings: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "Redis is unavailable" in str(event.get("log_format", "")):
            warnings.append(str(event.get("what")))

    async def work(p: Echo, ctx: JobContext) -> int:
        await sleep(0.005)
        return p.value

    harness.handlers["echo"] = work
    await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(300)], attempts=10)
    globalLogPublisher.addObserver(observe)
    try:
        harness.worker()
        await wait_until(completed(harness, 50))
        redis_server.stop()
        await sleep(0.5)
        redis_server.start()
        await wait_until(completed(harness, 300), timeout=20)
    finally:
        globalLogPublisher.removeObserver(observe)
    counts = await harness.queue.stats("test")
    assert (counts.completed, counts.dead, counts.waiting) == (300, 0, 0)
    assert warnings, "the outage was not reported"
    # One line for the outage, not a loop of errors: the two queues' workers may each
    # notice it first (the warning names the activity), but none repeats itself.
    assert len(warnings) <= 2, warnings
    assert len(set(warnings)) == len(warnings), warnings


@pytest_twisted.ensureDeferred
async def test_paused_queue_is_not_worked_until_resumed(harness: Harness) -> None:
    """A running worker leaves a paused queue alone and picks its jobs up at once when it
    is resumed."""
    ran: list[int] = []
    harness.handlers["echo"] = lambda p, ctx: ran.append(p.value)
    await harness.queue.pause("test")
    harness.worker()
    await harness.queue.enqueue("echo", Echo(1))
    await sleep(0.3)
    assert ran == []
    await harness.queue.resume("test")
    await wait_until(lambda: ran == [1], timeout=0.8)  # well before the 1 s idle wait


@pytest_twisted.ensureDeferred
async def test_transitions_are_counted_in_prometheus(harness: Harness) -> None:
    """Enqueued, completed, failed, retried and dead jobs show up in the metrics."""

    def value(metric: Any, *labels: str) -> float:
        return float(metric.labels(*labels)._value.get())

    before = {
        "enq": value(metrics.ENQUEUED, "test", "flaky"),
        "done": value(metrics.COMPLETED, "test", "flaky"),
        "failed": value(metrics.FAILED, "test", "flaky"),
        "retried": value(metrics.RETRIED, "test", "flaky"),
        "dead": value(metrics.DEAD, "test", "flaky"),
    }

    def flaky(p: Echo, ctx: JobContext) -> int:
        if p.value == 0 or ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return 1

    harness.handlers["flaky"] = flaky
    ok, doomed = await harness.queue.enqueue_bulk("flaky", [Echo(1), Echo(0)], attempts=2)
    harness.worker()
    await wait_until(in_state(harness, ok, "completed"))
    await wait_until(in_state(harness, doomed, "dead"))
    assert value(metrics.ENQUEUED, "test", "flaky") - before["enq"] == 2
    assert value(metrics.COMPLETED, "test", "flaky") - before["done"] == 1
    assert value(metrics.FAILED, "test", "flaky") - before["failed"] == 3
    assert value(metrics.RETRIED, "test", "flaky") - before["retried"] == 2
    assert value(metrics.DEAD, "test", "flaky") - before["dead"] == 1
    await harness.queue.stats("test")
    assert metrics.DEPTH.labels("test", "dead")._value.get() == 1


@pytest_twisted.ensureDeferred
async def test_run_times_of_every_kind_of_processor_are_observed(harness: Harness) -> None:
    """The run-time histogram counts each job that succeeded, whether its processor
    answered at once, with a Deferred or as a coroutine, and its sum holds the time
    each took."""

    def observed(job_type: str) -> tuple[float, float]:
        child = metrics.RUN_SECONDS.labels("test", job_type)
        samples = {s.name: s.value for s in child._samples()}
        return samples["_count"], samples["_sum"]

    def busy(_p: Echo, _ctx: JobContext) -> None:
        until = time.perf_counter() + 0.02
        while time.perf_counter() < until:
            pass

    async def later(_p: Echo, _ctx: JobContext) -> None:
        await sleep(0.02)

    # The harness's job types, each with a processor of another kind.
    harness.handlers["echo"] = busy
    harness.handlers["slow"] = lambda _p, _ctx: deferLater(reactor, 0.02, lambda: None)
    harness.handlers["flaky"] = later
    before = {name: observed(name) for name in ("echo", "slow", "flaky")}
    for name in before:
        await harness.queue.enqueue(name, Echo(1))
    harness.worker()
    await wait_until(completed(harness, 3))
    for name, (count, total) in before.items():
        after_count, after_total = observed(name)
        assert after_count - count == 1, name
        assert after_total - total >= 0.015, name


@pytest_twisted.ensureDeferred
async def test_keys_with_odd_characters_survive_the_round_trip(harness: Harness) -> None:
    """Idempotency keys with quotes, backslashes and unicode come back intact in the
    claim (the claim reply is spliced JSON) and the job runs."""
    key = 'a"b\\c\u00e9\n'
    seen: list[Any] = []
    harness.handlers["echo"] = lambda p, ctx: seen.append(ctx.idempotency_key)
    await harness.queue.enqueue("echo", Echo(1, note='quote " and \\'), idempotency_key=key)
    harness.worker()
    await wait_until(lambda: seen)
    assert seen == [key]


@pytest_twisted.ensureDeferred
async def test_delayed_job_runs_when_due_not_at_the_next_idle_wakeup(harness: Harness) -> None:
    """An idle worker sleeps until the next delayed job is due, not a fixed interval:
    a job delayed 0.3 s runs after about 0.3 s (idle_wait is 1 s here)."""
    from twisted.internet import reactor

    ran: list[float] = []
    harness.handlers["echo"] = lambda p, ctx: ran.append(reactor.seconds())
    harness.worker()
    await sleep(0.1)
    sent = reactor.seconds()
    await harness.queue.enqueue("echo", Echo(1), delay=0.3)
    await wait_until(lambda: ran, timeout=2)
    assert 0.28 <= ran[0] - sent < 0.8


@pytest_twisted.ensureDeferred
async def test_active_jobs_are_listed_with_their_worker(harness: Harness) -> None:
    """Listing the active state shows running jobs, the worker holding them and when
    they started."""
    gate: defer.Deferred[None] = defer.Deferred()
    harness.handlers["echo"] = lambda p, ctx: gate
    job_id = await harness.queue.enqueue("echo", Echo(1))
    harness.worker(worker_id="node-a")
    await wait_until(in_state(harness, job_id, "active"))
    jobs, total = await harness.queue.list("test", "active")
    assert total == 1
    assert (jobs[0].id, jobs[0].state, jobs[0].worker) == (job_id, "active", "node-a")
    assert jobs[0].started_at is not None
    gate.callback(None)
    await wait_until(in_state(harness, job_id, "completed"))
    assert (await harness.queue.get("test", job_id)).worker == "node-a"


@pytest_twisted.ensureDeferred
async def test_retention_age_holds_on_a_quiet_queue(harness_factory: Any) -> None:
    """Finished jobs older than the retention age go even when nothing else happens in
    the queue (the sweeper applies retention, not only new completions)."""
    h: Harness = harness_factory(keep_completed_age=0.3, keep_dead_age=0.3)

    def run(p: Echo, ctx: JobContext) -> int:
        if p.value:
            raise PermanentError("dead on arrival")
        return 0

    h.handlers["echo"] = run
    await h.queue.enqueue_bulk("echo", [Echo(0), Echo(1)])
    h.worker()
    await wait_until(lambda: h.queue.stats("test").addCallback(
        lambda c: (c.completed, c.dead) == (1, 1)))
    await wait_until(lambda: h.queue.stats("test").addCallback(
        lambda c: (c.completed, c.dead) == (0, 0)), timeout=2)


@pytest_twisted.ensureDeferred
async def test_worker_with_a_hostile_id_runs_jobs_and_is_named_right(harness: Harness) -> None:
    """A worker whose id holds quotes, backslashes, braces and non-ASCII text claims,
    runs and completes jobs, and the job's history names it exactly."""
    worker_id = 'node "a" \\ {b} [c] ü'
    harness.handlers["echo"] = lambda p, ctx: p.value * 2
    ids = await harness.queue.enqueue_bulk("echo", [Echo(1), Echo(2)])
    harness.worker(worker_id=worker_id)
    await wait_until(completed(harness, 2))
    records = [await harness.queue.get("test", job_id) for job_id in ids]
    assert [(r.result, r.worker) for r in records] == [(2, worker_id), (4, worker_id)]


def test_worker_service_refuses_an_unusable_id_at_once(harness: Harness) -> None:
    """WorkerService(worker_id=...) with a newline or an empty id fails when it is made,
    with the reason, not later inside a script."""
    from installsure.jobs.worker import WorkerService

    with pytest.raises(ValueError, match="control characters"):
        WorkerService(harness.queue, worker_id="a\nb")
    with pytest.raises(ValueError, match="must not be empty"):
        WorkerService(harness.queue, worker_id="")


@pytest_twisted.ensureDeferred
async def test_drain_hook_and_service_tree_stop_the_workers_once(harness: Harness) -> None:
    """Wired as the process wires it, the drain hook and the service tree's stop in
    reverse order both stop the worker service: its workers drain once, and the second
    stop waits for that drain instead of returning early."""
    from twisted.application.service import MultiService

    from installsure.drain import DrainService
    from installsure.jobs.worker import WorkerService
    from installsure.service import InstallSureService

    gate: defer.Deferred[None] = defer.Deferred()
    harness.handlers["echo"] = lambda p, ctx: gate
    job_id = await harness.queue.enqueue("echo", Echo(1))
    tree: MultiService = InstallSureService()  # type: ignore[no-untyped-call]
    workers = WorkerService(harness.queue, grace=5.0)
    workers.setServiceParent(tree)  # type: ignore[no-untyped-call]
    drain = DrainService(grace=5.0)
    drain.add_hook("jobs", lambda _grace: workers.stopService())
    drain.setServiceParent(tree)  # type: ignore[no-untyped-call]
    stops: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if str(event.get("log_format")).startswith(
            ("worker {worker_id} stopped", "draining", "shutdown 4/4")
        ):
            stops.append(event["log_format"])

    tree.startService()  # type: ignore[no-untyped-call]
    await wait_until(in_state(harness, job_id, "active"))
    globalLogPublisher.addObserver(observer)
    try:
        stopping = tree.stopService()  # type: ignore[no-untyped-call]
        await sleep(0.2)
        assert not stopping.called  # both stops wait for the running job
        gate.callback(None)
        await stopping
    finally:
        globalLogPublisher.removeObserver(observer)
    assert stops == [
        "shutdown 4/4, finish work: {left:.1f} s of the grace left; {summary}",
        "draining {queue}: waiting up to {grace} s for {count} running jobs",
        "worker {worker_id} stopped",
    ]
    assert (await harness.queue.get("test", job_id)).state == "completed"


@pytest_twisted.ensureDeferred
async def test_job_queued_by_an_older_version_keeps_its_options(harness: Harness) -> None:
    """A job whose options were stored in the older one-letter form (queued before an
    upgrade) runs with its own attempts (2 here; the queue's are 3, the fallback's 1)."""
    runs: list[int] = []

    def fails(p: Echo, ctx: JobContext) -> None:
        runs.append(ctx.max_attempts)
        raise RuntimeError("no")

    harness.handlers["echo"] = fails
    job_id = await harness.queue.enqueue("echo", Echo(1))
    legacy = '{"a": 2, "b": {"kind": "fixed", "delay": 0.01, "max": 1.0}, "t": 7.0}'
    await harness.redis.execute("HSET", harness.queue.keys("test").job(job_id), "opts", legacy)
    harness.worker()
    await wait_until(in_state(harness, job_id, "dead"))
    record = await harness.queue.get("test", job_id)
    assert runs == [2, 2]
    assert (record.max_attempts, record.attempts_made) == (2, 2)


@pytest_twisted.ensureDeferred
async def test_jobs_finishing_together_free_their_slots_together(harness_factory: Any) -> None:
    """The jobs of one claim that finish as they start (synchronous processors) free
    their slots once the whole batch has started, so the next claims ask for many
    jobs each, not for one job per finished one."""
    h = harness_factory()
    await h.queue.enqueue_bulk("echo", [Echo(i) for i in range(400)])
    asked: list[int] = []
    claim = h.queue.scripts.claim

    def counting(keys: Any, args: Any) -> Any:
        asked.append(args[0])
        return claim(keys, args)

    h.queue.scripts.claim = counting
    h.worker(queues=["test"], concurrency={"test": 10})
    await wait_until(completed(h, 400))
    # Two lanes of concurrency 10: 5 each. One freed slot at a time gave claims of 1-4.
    assert len([n for n in asked if n < 5]) <= 2
