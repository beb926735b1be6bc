"""The job runner: runs claimed jobs of one queue through their processors.

Each job gets a ``JobContext``, its payload checked against its type, and a timeout
(its Deferred is cancelled). What comes out, a result or a failure, goes to the result
flusher; nothing here talks to Redis except progress reports.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.jobs import metrics
from installsure.jobs.context import JobContext
from installsure.jobs.errors import InvalidPayload, PermanentError, UnknownJobType
from installsure.jobs.events import QueueJobEvents, file_progress_topic
from installsure.jobs.keys import QueueKeys
from installsure.jobs.outcome import judge_failure
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.results import ResultFlusher
from installsure.jobs.scripts import Scripts
from installsure.jobs.wire import ClaimedJob
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.jobs.worker")


@define
class Running:
    """A job whose processor runs here."""

    job: ClaimedJob
    started: float
    deferred: Deferred[Any] | None = None
    timeout_call: IDelayedCall | None = None
    timed_out: bool = False
    # Given back by a drain, or its lease lost: whatever the processor does now is
    # ignored.
    released: bool = False
    ctx: JobContext | None = None


class JobRunner:
    """Runs the jobs of one queue that this worker claimed (module docstring).

    ``on_slot_freed`` is called whenever a job stops running here, so the claim loop
    may claim again; ``on_lease_lost(tokens)`` when a progress write finds a lease
    lost.
    """

    def __init__(
        self,
        queue: str,
        worker_id: str,
        *,
        registry: JobRegistry,
        redis: RedisCommands,
        scripts: Scripts,
        keys: QueueKeys,
        idempotency_ttl: float,
        reactor: IReactorTime,
        results: ResultFlusher,
        events: QueueJobEvents,
        counters: metrics.QueueCounters,
        on_slot_freed: Callable[[], None],
        on_lease_lost: Callable[[list[str]], None],
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._registry = registry
        self._redis = redis
        self._scripts = scripts
        self._keys = keys
        self._idempotency_ttl = idempotency_ttl
        self._reactor = reactor
        self._results = results
        self._events = events
        self._counters = counters
        self._on_slot_freed = on_slot_freed
        self._on_lease_lost = on_lease_lost
        self._running: dict[str, Running] = {}  # by job id
        self._idle: Deferred[None] | None = None
        self._starting = False  # in run_claimed: slots freed are announced after it
        self._freed_while_starting = False
        self._wait_hist = metrics.WAIT_SECONDS.labels(queue)
        self._in_flight = metrics.IN_FLIGHT.labels(queue)

    # --- what the worker asks

    @property
    def count(self) -> int:
        return len(self._running)

    def is_running(self, job_id: str) -> bool:
        return job_id in self._running

    def jobs(self) -> list[ClaimedJob]:
        return [running.job for running in self._running.values()]

    def run_claimed(self, jobs: Sequence[ClaimedJob], now: float) -> None:
        """Start the jobs of one claim; ``now`` is Redis' time of the claim (ms).

        The slots that jobs finishing at once free are announced once, after the
        whole batch started: announced one by one, each would send a claim of its own
        (of one job) in the middle of the batch."""
        self._starting = True
        try:
            for job in jobs:
                self._wait_hist.observe(max(0.0, (now - job.ready) / 1000.0))
                self._run(job)
        finally:
            self._starting = False
        self._in_flight.set(len(self._running))
        if self._freed_while_starting:
            self._freed_while_starting = False
            self._on_slot_freed()

    async def wait_idle(self, grace: float) -> None:
        """Wait until no job runs here, or ``grace`` seconds."""
        if not self._running:
            return
        log.info(
            "draining {queue}: waiting up to {grace} s for {count} running jobs",
            queue=self._queue, grace=grace, count=len(self._running),
        )
        self._idle = Deferred()
        timer = self._reactor.callLater(grace, self._idle.callback, None)
        await self._idle
        if timer.active():
            timer.cancel()

    def give_back(self) -> list[Running]:
        """Mark every running job as given back: its outcome is ignored from now on.
        ``drop`` each one once Redis has it back."""
        unfinished = list(self._running.values())
        for running in unfinished:
            running.released = True
        return unfinished

    def drop(self, running: Running) -> None:
        """Forget a job given back, and cancel its processor."""
        self._forget(running)
        if running.deferred is not None:
            running.deferred.cancel()

    def lose(self, token: str) -> ClaimedJob | None:
        """The lease ``token`` is lost: if its job runs here, tell its context, cancel
        its processor and ignore whatever it does from now on; returns the job, or None
        when it does not run here."""
        # Rare, and few jobs run here: a scan is fine.
        running = next((r for r in self._running.values() if r.job.token == token), None)
        if running is None or running.released:
            return None
        running.released = True
        if running.ctx is not None:
            running.ctx.lease_lost = True
        if running.timeout_call is not None and running.timeout_call.active():
            running.timeout_call.cancel()
        self.drop(running)
        self._in_flight.set(len(self._running))
        return running.job

    # --- running

    def _run(self, job: ClaimedJob) -> None:
        running = Running(job, self._reactor.seconds())
        self._running[job.id] = running
        try:
            job_type = self._registry.get(job.type)
            payload = job_type.load_payload(job.data, job.version)
        except (UnknownJobType, InvalidPayload, ValueError) as e:
            # No retry can fix this on this worker: the message says what is wrong.
            self._finished(Failure(PermanentError(str(e))), running, None)  # type: ignore[no-untyped-call]
            return
        ctx = JobContext(
            job.id, self._queue, job.type, job.attempts_made + 1, job.max_attempts,
            job.idempotency_key, job.created / 1000.0, self._redis,
            partial(self._keys.effect, job.idempotency_key or job.id),
            self._idempotency_ttl,
            partial(self._progress, job, payload),
        )
        running.ctx = ctx
        if self._events.transitions:
            self._events.transition(job.id, job.type, "active", attempt=job.attempts_made + 1)
        started = time.perf_counter()
        try:
            result = job_type.processor(payload, ctx)
        except Exception:  # a processor that raises at once fails its attempt
            self._finished(Failure(), running, job_type)  # type: ignore[no-untyped-call]
            return
        if result is None:  # the usual synchronous end, told apart without isinstance
            self._finished(None, running, job_type, ran_for=time.perf_counter() - started)
            return
        if isinstance(result, Deferred):
            d: Deferred[Any] = result
        elif inspect.iscoroutine(result):
            d = Deferred.fromCoroutine(result)
        else:
            # Synchronous processors finish here: no Deferred, no timer. Their run
            # time is measured with the precise clock: most take microseconds.
            self._finished(result, running, job_type, ran_for=time.perf_counter() - started)
            return
        if d.called:
            d.addBoth(self._finished, running, job_type)
            return
        running.deferred = d
        if job.timeout > 0:
            running.timeout_call = self._reactor.callLater(job.timeout, self._time_out, running)
        d.addBoth(self._finished, running, job_type)

    def _time_out(self, running: Running) -> None:
        running.timed_out = True
        metrics.TIMED_OUT.labels(self._queue).inc()
        if running.deferred is not None:
            running.deferred.cancel()

    def _finished(
        self,
        result: object,
        running: Running,
        job_type: JobType | None,
        *,
        ran_for: float | None = None,
    ) -> None:
        """``ran_for``: a synchronous processor's run time; otherwise it is the time
        since the job started."""
        if running.released:
            return
        job = running.job
        if running.timeout_call is not None and running.timeout_call.active():
            running.timeout_call.cancel()
        # The result goes to the flusher before the job leaves: a drain waiting for the
        # last job resumes inside _forget and must find its result there to report.
        if isinstance(result, Failure):
            self._results.failed(judge_failure(
                job, result, timed_out=running.timed_out, queue=self._queue,
                worker_id=self._worker_id,
            ))
        else:
            if result is None:
                encoded = "null"
            else:
                try:
                    encoded = json.dumps(result)
                except (TypeError, ValueError):
                    encoded = json.dumps({"repr": repr(result)[:1000]})
            if ran_for is None:
                ran_for = self._reactor.seconds() - running.started
            self._counters.ran(job.type, ran_for)
            self._results.completed(job, encoded)
        self._forget(running)

    def _forget(self, running: Running) -> None:
        self._running.pop(running.job.id, None)
        if self._starting:
            self._freed_while_starting = True
        else:
            self._on_slot_freed()
        if self._idle is not None and not self._running and not self._idle.called:
            self._idle.callback(None)

    # --- progress

    def _progress(
        self, job: ClaimedJob, payload: object, percent: float, stage: str
    ) -> Deferred[None]:
        body = {"percent": percent, "stage": stage}
        self._events.announce(
            {"jobId": job.id, "type": job.type, "state": "active", "progress": body}
        )
        file_id = getattr(payload, "file_id", None)
        if isinstance(file_id, str):
            self._events.publisher.publish(file_progress_topic(file_id), body)
        d = self._scripts.progress([self._keys.base], [job.id, job.token, json.dumps(body)])
        d.addCallback(self._progress_stored, job)
        # Progress is advisory: a lost write must not fail the job.
        d.addErrback(
            lambda f: log.debug("progress of {job_id} not stored: {error}",
                                job_id=job.id, error=f.getErrorMessage())
        )
        return d

    def _progress_stored(self, held: object, job: ClaimedJob) -> None:
        # 0: the script found another lease (or none) on the job.
        if held in (0, "0"):
            running = self._running.get(job.id)
            if running is not None and running.job.token == job.token:
                self._on_lease_lost([job.token])
