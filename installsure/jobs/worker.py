"""The worker: claims jobs in batches, runs their processors, reports results in batches.

One ``QueueWorker`` per queue, all inside one ``WorkerService``. A worker

* claims up to min(free slots, batch size) jobs per script call, and when the queue is
  empty blocks on the queue's marker list on a connection of its own (no polling);
* runs each processor with a timeout (the Deferred is cancelled);
* reports completions and failures in batches flushed every ``flush_interval``;
* renews its leases and its liveness key every ``heartbeat_interval``;
* sweeps the queue for jobs of dead workers every ``sweeper_interval`` (every node does
  this; the script makes it safe);
* on stop, lets running jobs finish within ``grace`` and puts the rest back at the head
  of the queue without spending an attempt.
"""

from __future__ import annotations

import inspect
import json
import os
import secrets
import socket
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from attrs import define, field
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.jobs import metrics
from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.context import JobContext
from installsure.jobs.errors import InvalidPayload, PermanentError, RetryLater, UnknownJobType
from installsure.jobs.events import (
    JobEventPublisher,
    file_progress_topic,
    job_topic,
)
from installsure.jobs.keys import QueueKeys, Scripts
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.redis.interfaces import BlockingRedis, RedisArg, RedisCommands

log = Logger(namespace="installsure.jobs.worker")

_FLUSH_CHUNK = 500  # results per script call
_OUTAGE_QUIET = 10.0  # seconds after a recovery in which new errors are not a new outage


@define
class ClaimedJob:
    """A job this worker holds a lease on."""

    id: str
    token: str
    type: str
    data: Any
    version: int
    attempts_made: int
    max_attempts: int
    backoff: BackoffPolicy
    timeout: float
    created: float
    ready: float
    idempotency_key: str | None
    unique_key: str


@define
class _Running:
    job: ClaimedJob
    started: float
    deferred: Deferred[Any] | None = None
    timeout_call: IDelayedCall | None = None
    timed_out: bool = False
    # Given back by a drain: whatever the processor does now is ignored.
    released: bool = False


@define
class _OutageLog:
    """One warning when Redis goes away and one line when it is back, for a whole
    worker service, however many loops notice it. Errors from loops that are still
    reconnecting just after Redis came back do not count as a new outage."""

    failing: bool = False
    warned: bool = False
    back_at: float = -1e9

    def down(self, what: str, error: BaseException) -> None:
        self.failing = True
        if not self.warned and time.monotonic() - self.back_at > _OUTAGE_QUIET:
            log.warn(
                "Redis is unavailable ({what}): {error}; workers pause until it answers",
                what=what, error=error,
            )
            self.warned = True

    def up(self, what: str) -> None:
        if self.failing:
            if self.warned:
                log.info("Redis answers again ({what}); workers resume", what=what)
            self.failing = False
            self.warned = False
            self.back_at = time.monotonic()


@define
class _Outage:
    """A growing pause between attempts of one activity while Redis fails."""

    what: str
    log: _OutageLog
    delay: float = 0.0

    def failed(self, error: BaseException) -> float:
        self.log.down(self.what, error)
        self.delay = min(5.0, max(0.25, self.delay * 2))
        return self.delay

    def succeeded(self) -> None:
        if self.delay:
            self.log.up(self.what)
        self.delay = 0.0


@define
class _Counters:
    """Prometheus children per label set, looked up once."""

    queue: str
    completed: dict[str, Any] = field(factory=dict)
    run: dict[str, Any] = field(factory=dict)

    def ran(self, job_type: str, seconds: float) -> None:
        """Run time of a processor that succeeded (about half a microsecond each)."""
        h = self.run.get(job_type)
        if h is None:
            h = self.run[job_type] = metrics.RUN_SECONDS.labels(self.queue, job_type)
        h.observe(seconds)

    def completed_batch(self, done: Sequence[tuple[ClaimedJob, str]], refused: set[str]) -> None:
        counts: dict[str, int] = {}
        for job, _ in done:
            if job.id not in refused:
                counts[job.type] = counts.get(job.type, 0) + 1
        for job_type, n in counts.items():
            c = self.completed.get(job_type)
            if c is None:
                c = self.completed[job_type] = metrics.COMPLETED.labels(self.queue, job_type)
            c.inc(n)


class QueueWorker:
    """Runs the jobs of one queue; see the module docstring."""

    def __init__(
        self,
        queue: JobQueue,
        name: str,
        worker_id: str,
        reactor: IReactorTime,
        *,
        concurrency: int | None = None,
        outage: _OutageLog | None = None,
    ) -> None:
        self.name = name
        self.worker_id = worker_id
        self._redis: RedisCommands = queue.redis
        self._scripts: Scripts = queue.scripts
        self._queue = queue
        self._registry: JobRegistry = queue.registry
        self._settings: JobsSettings = queue.settings
        self._qs: QueueSettings = queue.settings.queue(name)
        self._keys: QueueKeys = queue.keys(name)
        self._publisher: JobEventPublisher = queue.publisher
        self._events = queue.settings.job_events
        self._reactor = reactor
        self.concurrency = concurrency or self._qs.concurrency
        self._running: dict[str, _Running] = {}
        # Results not yet accepted by Redis: (job, args for the script, outcome).
        self._done: list[tuple[ClaimedJob, str]] = []
        self._failed: list[tuple[ClaimedJob, list[object], str, str]] = []
        self._in_flush: dict[str, ClaimedJob] = {}
        self._flush_call: IDelayedCall | None = None
        self._flushing: Deferred[None] | None = None
        self._flush_deadline = float("inf")  # set by stop(): give up reporting after it
        self._blocking: BlockingRedis | None = None
        self._waits: set[Deferred[Any]] = set()
        # Free slots taken by claims in flight; waiters for a free slot / for work.
        self._reserved = 0
        self._slot_waiters: list[Deferred[None]] = []
        self._work_waiters: list[Deferred[None]] = []
        lanes = 2 if self.concurrency >= 2 else 1
        self._per_lane = max(1, min(self._settings.batch_size, -(-self.concurrency // lanes)))
        self._lanes = lanes
        self._idle: Deferred[None] | None = None
        self._loops: list[Deferred[None]] = []
        self._stopping = False
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        self._sweeper = task.LoopingCall(self._sweep)
        self._sweeper.clock = reactor
        outage = outage or _OutageLog()
        self._claim_outage = _Outage(f"claiming from {name}", outage)
        self._flush_outage = _Outage(f"reporting results of {name}", outage)
        self._beat_outage = _Outage(f"heartbeat of {name}", outage)
        self._sweep_outage = _Outage(f"sweeping {name}", outage)
        self._counters = _Counters(name)
        self._wait_hist = metrics.WAIT_SECONDS.labels(name)
        self._opts_cache: dict[tuple[Any, ...], tuple[int, BackoffPolicy, float]] = {}

    # --- life cycle

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        self._stopping = False
        self._blocking = self._redis.blocking_connection()
        self._heartbeat.start(self._settings.heartbeat_interval, now=True)
        self._sweeper.start(self._settings.sweeper_interval, now=False)
        for lane in range(self._lanes):
            loop = Deferred.fromCoroutine(self._claim_loop(lane))
            loop.addErrback(
                lambda f: log.failure("claim loop of {queue} died", f, queue=self.name)
            )
            self._loops.append(loop)

    async def stop(self, grace: float) -> None:
        """Stop claiming; wait up to ``grace`` s for running jobs; give back the rest."""
        self._stopping = True
        for d in list(self._waits):
            d.cancel()
        self._wake(self._slot_waiters)
        self._wake(self._work_waiters)
        for loop in self._loops:
            await loop
        self._loops = []
        if self._running:
            log.info(
                "draining {queue}: waiting up to {grace} s for {count} running jobs",
                queue=self.name, grace=grace, count=len(self._running),
            )
            self._idle = Deferred()
            timer = self._reactor.callLater(grace, self._idle.callback, None)
            await self._idle
            if timer.active():
                timer.cancel()
        await self._flush_all(deadline=self._reactor.seconds() + max(grace, 5.0))
        unfinished = list(self._running.values())
        if unfinished:
            await self._release(unfinished)
        if self._sweeper.running:
            self._sweeper.stop()
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._blocking is not None:
            blocking, self._blocking = self._blocking, None
            try:
                await blocking.close()
            except Exception as e:  # closing a dead connection may fail; nothing to do
                log.debug("closing the blocking connection failed: {error}", error=e)
        try:
            await self._redis.execute("DEL", f"{self._keys.base}:alive:{self.worker_id}")
            await self._redis.execute("ZREM", f"{self._keys.base}:workers", self.worker_id)
        except Exception as e:  # the liveness key expires by itself
            log.debug("could not withdraw worker {worker_id}: {error}",
                      worker_id=self.worker_id, error=e)

    async def _release(self, unfinished: list[_Running]) -> None:
        held: list[str] = []
        for running in unfinished:
            running.released = True
            held += [running.job.id, running.job.token]
        try:
            released = await self._scripts.release([self._keys.base], [json.dumps(held)])
        except Exception as e:
            # Their leases lapse and the sweeper returns them (as a stall).
            log.warn(
                "could not give back {count} unfinished jobs of {queue}: {error}; "
                "they return to waiting when their leases lapse",
                count=len(unfinished), queue=self.name, error=e,
            )
            released = 0
        log.info(
            "gave back {count} unfinished jobs of {queue} without spending an attempt",
            count=released, queue=self.name,
        )
        metrics.RELEASED.labels(self.name).inc(int(released))
        for running in unfinished:
            self._forget(running)
            if running.deferred is not None:
                running.deferred.cancel()
            self._event(running.job, "waiting", released=True)

    # --- claiming

    async def _claim_loop(self, lane: int) -> None:
        """Claim and start jobs. Lane 0 waits for work when the queue is empty; lane 1
        keeps a second claim in flight while there is work, so Redis prepares the next
        batch while this process runs the current one."""
        while not self._stopping:
            free = self.concurrency - len(self._running) - self._reserved
            if free <= 0:
                await self._wait_for(self._slot_waiters)
                continue
            count = min(free, self._per_lane)
            self._reserved += count
            try:
                reply = await self._scripts.claim(
                    [self._keys.base],
                    [
                        count,
                        self.worker_id,
                        round(self._settings.lease_ttl * 1000),
                        secrets.token_hex(6) + ":",
                        self._qs.rate_limit_count,
                        round(self._qs.rate_limit_period * 1000),
                        self._qs.priority_aging * 1000,
                    ],
                )
            except Exception as e:  # any failure: pause, then try again
                self._reserved -= count
                if self.stopping:
                    return
                await self._sleep(self._claim_outage.failed(e))
                continue
            self._reserved -= count
            self._claim_outage.succeeded()
            try:
                reply = json.loads(reply)
                status, now, due = reply[0], float(reply[1]), reply[2]
            except (ValueError, TypeError, IndexError):
                # A claim script of another version may be loaded: say so, do not spin.
                log.error("unreadable claim reply from Redis for {queue}: {reply}",
                          queue=self.name, reply=repr(reply)[:200])
                await self._sleep(self._settings.idle_wait)
                continue
            if status == "ok" and len(reply) > 3:
                self._start_jobs(reply[3:], now)
                self._wake(self._work_waiters)
                continue
            if status == "limited":
                # `now` is the time until the rate-limit window reopens.
                await self._sleep(max(0.005, now / 1000.0))
                continue
            if lane != 0:
                await self._wait_for(self._work_waiters)
                continue
            timeout = self._settings.idle_wait
            if due != "":
                timeout = min(timeout, max(0.0, (float(due) - now) / 1000.0))
            if status == "ok" and timeout > 0:
                await self._block(timeout)
            elif status == "paused":
                await self._block(self._settings.idle_wait)
            else:
                await self._sleep(max(timeout, 0.001))

    async def _wait_for(self, waiters: list[Deferred[None]]) -> None:
        # stop() wakes the waiters once; a loop that comes here after that (its claim was
        # in flight during stop) must not wait for a wake-up that will never come.
        if self._stopping:
            return
        d: Deferred[None] = Deferred()
        waiters.append(d)
        await d

    @staticmethod
    def _wake(waiters: list[Deferred[None]]) -> None:
        ready = list(waiters)
        waiters.clear()
        for d in ready:
            d.callback(None)

    async def _block(self, seconds: float) -> None:
        """Wait for the marker an enqueue pushes, at most ``seconds``."""
        if self._stopping or self._blocking is None:
            return
        seconds = max(0.01, round(seconds, 3))
        failed = await self._interruptible(
            self._blocking.execute("BLPOP", self._keys.marker, seconds, timeout=seconds + 5.0)
        )
        if failed is not None and not self._stopping:
            await self._sleep(self._claim_outage.failed(failed))

    async def _sleep(self, seconds: float) -> None:
        if not self._stopping:
            await self._interruptible(task.deferLater(self._reactor, seconds))

    async def _interruptible(self, d: Deferred[Any]) -> Exception | None:
        """Await ``d``, which stop() cancels; returns the error it failed with, if any."""
        self._waits.add(d)
        try:
            await d
        except CancelledError:
            return None
        except Exception as e:  # the caller decides what a failure means
            return e
        finally:
            self._waits.discard(d)
        return None

    def _options(self, opts: dict[str, Any]) -> tuple[int, BackoffPolicy, float]:
        b = opts["b"]
        key = (opts["a"], b["kind"], b["delay"], b["max"], opts["t"])
        cached = self._opts_cache.get(key)
        if cached is None:
            cached = (int(opts["a"]), BackoffPolicy.from_json(b), float(opts["t"]))
            if len(self._opts_cache) > 1000:
                self._opts_cache.clear()
            self._opts_cache[key] = cached
        return cached

    def _start_jobs(self, rows: Sequence[Sequence[Any]], now: float) -> None:
        for row in rows:
            (job_id, token, job_type, data, opts, version, attempts, _stalls,
             created, ready, idem, uniq) = row[:12]
            try:
                max_attempts, backoff, timeout = self._options(opts)
            except (ValueError, KeyError, TypeError):
                max_attempts, backoff, timeout = 1, BackoffPolicy(), self._qs.timeout
            job = ClaimedJob(
                job_id, token, job_type, data, int(version), int(attempts), max_attempts,
                backoff, timeout, float(created), float(ready), idem or None, uniq,
            )
            self._wait_hist.observe(max(0.0, (now - ready) / 1000.0))
            self._run(job)
        metrics.IN_FLIGHT.labels(self.name).set(len(self._running))

    # --- running

    def _run(self, job: ClaimedJob) -> None:
        running = _Running(job, self._reactor.seconds())
        self._running[job.id] = running
        try:
            job_type = self._registry.get(job.type)
            payload = job_type.load_payload(job.data, job.version)
        except (UnknownJobType, InvalidPayload, ValueError) as e:
            # No retry can fix this on this worker: the message says what is wrong.
            self._finished(Failure(PermanentError(str(e))), running, None)  # type: ignore[no-untyped-call]
            return
        ctx = JobContext(
            job.id, self.name, job.type, job.attempts_made + 1, job.max_attempts,
            job.idempotency_key, job.created / 1000.0, self._redis,
            partial(self._keys.effect, job.idempotency_key or job.id),
            self._settings.idempotency_ttl,
            partial(self._progress, job, payload),
        )
        if self._events:
            self._event(job, "active", attempt=job.attempts_made + 1)
        started = time.perf_counter()
        try:
            result = job_type.processor(payload, ctx)
        except Exception:  # a processor that raises at once fails its attempt
            self._finished(Failure(), running, job_type)  # type: ignore[no-untyped-call]
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

    def _time_out(self, running: _Running) -> None:
        running.timed_out = True
        metrics.TIMED_OUT.labels(self.name).inc()
        if running.deferred is not None:
            running.deferred.cancel()

    def _finished(
        self,
        result: object,
        running: _Running,
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
        self._forget(running)
        if isinstance(result, Failure):
            self._fail(job, result, running)
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
            self._done.append((job, encoded))
        self._schedule_flush()

    def _forget(self, running: _Running) -> None:
        self._running.pop(running.job.id, None)
        if self._slot_waiters:
            self._wake(self._slot_waiters)
        if self._idle is not None and not self._running and not self._idle.called:
            self._idle.callback(None)

    def _fail(self, job: ClaimedJob, failure: Failure, running: _Running) -> None:
        error = failure.value
        failures = job.attempts_made + 1
        if running.timed_out and isinstance(error, CancelledError):
            message = f"timed out after {job.timeout:g} s"
            kind = "timeout"
        else:
            message = f"{type(error).__name__}: {error}"
            kind = "permanent" if isinstance(error, PermanentError) else "error"
        if isinstance(error, RetryLater):
            action, delay, kind = "later", error.delay, "retry-later"
        elif isinstance(error, PermanentError) or failures >= job.max_attempts:
            action, delay = "dead", 0.0
        else:
            action, delay = "retry", job.backoff.delay_for(failures)
        if action != "later":
            metrics.FAILED.labels(self.name, job.type).inc()
            log.warn(
                "job {job_id} ({job_type}) of {queue} failed on attempt {attempt} of "
                "{max_attempts}: {error}; {outcome}",
                job_id=job.id, job_type=job.type, queue=self.name, attempt=failures,
                max_attempts=job.max_attempts, error=message,
                outcome="dead" if action == "dead" else f"retry in {delay:.3g} s",
            )
            if kind == "error" and not isinstance(error, Exception | CancelledError):
                log.failure("unexpected failure of job {job_id}", failure, job_id=job.id)
        if action == "dead":
            metrics.DEAD.labels(self.name, job.type).inc()
        else:
            metrics.RETRIED.labels(self.name, job.type).inc()
        record = {
            "message": message[:2000], "kind": kind, "attempt": failures,
            "worker": self.worker_id, "at": _iso_now(),
        }
        self._failed.append((job, [job.id, job.token, action, round(delay * 1000), record],
                             action, message))

    # --- reporting results

    def _schedule_flush(self) -> None:
        pending = len(self._done) + len(self._failed)
        if pending >= _FLUSH_CHUNK:
            self._start_flush()
        elif self._flush_call is None or not self._flush_call.active():
            self._flush_call = self._reactor.callLater(
                self._settings.flush_interval, self._start_flush
            )

    def _start_flush(self) -> None:
        if self._flushing is not None:
            return  # the running flush picks up what arrived meanwhile
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if not self._done and not self._failed:
            return
        self._flushing = Deferred.fromCoroutine(self._flush())
        self._flushing.addErrback(
            lambda f: log.failure("reporting results of {queue} failed", f, queue=self.name)
        )

    async def _flush(self) -> None:
        try:
            while self._done or self._failed:
                ok = await self._flush_once()
                if not ok:
                    if self._stopping and self._flush_deadline_passed():
                        return
                    await task.deferLater(self._reactor, self._flush_outage.delay)
        finally:
            self._flushing = None

    def _flush_deadline_passed(self) -> bool:
        return self._reactor.seconds() > self._flush_deadline

    async def _flush_once(self) -> bool:
        """Report one chunk of results; False (results kept for a retry) if Redis failed."""
        done, self._done = self._done[:_FLUSH_CHUNK], self._done[_FLUSH_CHUNK:]
        failed, self._failed = self._failed[:_FLUSH_CHUNK], self._failed[_FLUSH_CHUNK:]
        for job, _ in done:
            self._in_flush[job.id] = job
        for job, *_ in failed:
            self._in_flush[job.id] = job
        refused: list[str] = []
        accepted_done: list[tuple[ClaimedJob, str]] = []
        try:
            if done:
                batch = json.dumps(
                    [[job.id, job.token, encoded, job.unique_key] for job, encoded in done]
                )
                refused += await self._scripts.complete(
                    [self._keys.base],
                    [self._qs.keep_completed_count, round(self._qs.keep_completed_age * 1000),
                     batch],
                )
                accepted_done, done = done, []
            if failed:
                batch = json.dumps([fargs for _, fargs, _, _ in failed])
                refused += await self._scripts.fail(
                    [self._keys.base],
                    [self._qs.keep_dead_count, round(self._qs.keep_dead_age * 1000), batch],
                )
        except Exception as e:  # keep what was not accepted and try again later
            self._done[:0] = done
            self._failed[:0] = failed
            self._flush_outage.failed(e)
            self._results_accepted(accepted_done, [], set(refused))
            return False
        finally:
            self._in_flush.clear()
        self._flush_outage.succeeded()
        self._results_accepted(accepted_done, failed, set(refused))
        return True

    def _results_accepted(
        self,
        done: list[tuple[ClaimedJob, str]],
        failed: list[tuple[ClaimedJob, list[object], str, str]],
        refused: set[str],
    ) -> None:
        for job_id in refused:
            log.warn(
                "result of job {job_id} of {queue} refused: its lease was lost (it stalled "
                "and runs or ran elsewhere)", job_id=job_id, queue=self.name,
            )
        if refused:
            metrics.LEASE_LOST.labels(self.name).inc(len(refused))
        self._counters.completed_batch(done, refused)
        if self._events:
            for job, _ in done:
                if job.id not in refused:
                    self._event(job, "completed")
            for job, _, action, message in failed:
                if job.id not in refused:
                    state = {"retry": "failed", "later": "delayed", "dead": "dead"}[action]
                    self._event(job, state, error=message)
        self._queue.status.changed(self.name)

    async def _flush_all(self, deadline: float) -> None:
        self._flush_deadline = deadline
        while (self._done or self._failed or self._flushing is not None) and (
            self._reactor.seconds() < deadline
        ):
            if self._flushing is None:
                self._start_flush()
            if self._flushing is not None:
                await _observe(self._flushing)

    # --- leases, liveness, sweeping

    def _held(self) -> list[ClaimedJob]:
        held = [r.job for r in self._running.values()]
        held += [job for job, _ in self._done]
        held += [job for job, *_ in self._failed]
        held += list(self._in_flush.values())
        return held

    def _beat(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._beat_once())

    async def _beat_once(self) -> None:
        held = self._held()
        head: list[RedisArg] = [
            self.worker_id,
            round(self._settings.lease_ttl * 1000),
            round(self._settings.liveness_ttl * 1000),
        ]
        try:
            lost: list[str] = []
            for start in range(0, max(1, len(held)), _FLUSH_CHUNK):
                pairs = [x for job in held[start:start + _FLUSH_CHUNK] for x in (job.id, job.token)]
                lost += await self._scripts.heartbeat([self._keys.base], [*head, json.dumps(pairs)])
        except Exception as e:  # leases lapse only after lease_ttl: next beat may do
            self._beat_outage.failed(e)
            return
        self._beat_outage.succeeded()
        for job_id in lost:
            if job_id in self._running:
                log.warn(
                    "lease of job {job_id} of {queue} lost while it runs here; its result "
                    "will be refused", job_id=job_id, queue=self.name,
                )

    def _sweep(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._sweep_once())

    async def _sweep_once(self) -> None:
        qs = self._qs
        try:
            stalled, dead, promoted = await self._scripts.sweep(
                [self._keys.base],
                [
                    qs.max_stalls, qs.priority_aging * 1000,
                    round(self._settings.liveness_ttl * 1000),
                    qs.keep_dead_count, round(qs.keep_dead_age * 1000),
                    qs.keep_completed_count, round(qs.keep_completed_age * 1000),
                ],
            )
        except Exception as e:  # any node may sweep; the next run catches up
            self._sweep_outage.failed(e)
            return
        self._sweep_outage.succeeded()
        if stalled or dead:
            log.warn(
                "{count} jobs of {queue} stalled (their worker stopped renewing leases): "
                "{requeued} back to waiting, {dead} dead after too many stalls",
                count=len(stalled) + len(dead), queue=self.name,
                requeued=len(stalled), dead=len(dead),
            )
            metrics.STALLED.labels(self.name).inc(len(stalled) + len(dead))
            for job_id in stalled:
                self._publisher.publish(
                    job_topic(self.name), {"jobId": job_id, "state": "waiting", "stalled": True}
                )
            for job_id in dead:
                self._publisher.publish(
                    job_topic(self.name), {"jobId": job_id, "state": "dead", "stalled": True}
                )
        if stalled or dead or promoted:
            self._queue.status.changed(self.name)

    # --- progress and events

    def _progress(
        self, job: ClaimedJob, payload: object, percent: float, stage: str
    ) -> Deferred[None]:
        body = {"percent": percent, "stage": stage}
        self._publisher.publish(
            job_topic(self.name), {"jobId": job.id, "type": job.type, "state": "active",
                                   "progress": body}
        )
        file_id = getattr(payload, "file_id", None)
        if isinstance(file_id, str):
            self._publisher.publish(file_progress_topic(file_id), body)
        d = self._scripts.progress([self._keys.base], [job.id, job.token, json.dumps(body)])
        # Progress is advisory: a lost write must not fail the job.
        d.addErrback(
            lambda f: log.debug("progress of {job_id} not stored: {error}",
                                job_id=job.id, error=f.getErrorMessage())
        )
        return d.addCallback(lambda _: None)

    def _event(self, job: ClaimedJob, state: str, **extra: Any) -> None:
        self._publisher.publish(
            job_topic(self.name), {"jobId": job.id, "type": job.type, "state": state, **extra}
        )


def _observe(d: Deferred[Any]) -> Deferred[None]:
    """A Deferred that fires when ``d`` does, without taking its result."""
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if not out.called:
            out.callback(None)
        return result

    d.addBoth(fire)
    return out


def _iso_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_worker_id() -> str:
    """host:pid:random — unique per process, readable in the admin API."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerService(Service):
    """Runs the jobs of ``queues`` (default: every queue a registered type uses)."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        queues: Sequence[str] | None = None,
        grace: float = 30.0,
        worker_id: str | None = None,
        concurrency: dict[str, int] | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        if queues is None:
            queues = sorted({t.queue for t in queue.registry})
        for name in queues:
            queue.settings.queue(name)
        self.queue = queue
        self.queues = list(queues)
        self.grace = grace
        self.worker_id = worker_id or default_worker_id()
        self._concurrency = concurrency or {}
        self._reactor: IReactorTime = reactor
        self.workers: dict[str, QueueWorker] = {}

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        outage = _OutageLog()
        for name in self.queues:
            worker = QueueWorker(
                self.queue, name, self.worker_id, self._reactor,
                concurrency=self._concurrency.get(name), outage=outage,
            )
            self.workers[name] = worker
            worker.start()
        log.info("worker {worker_id} runs queues {queues}",
                 worker_id=self.worker_id, queues=", ".join(self.queues))

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        stopping = [Deferred.fromCoroutine(w.stop(self.grace)) for w in self.workers.values()]
        self.workers = {}
        d = defer.gatherResults(stopping, consumeErrors=True)
        d.addErrback(lambda f: log.failure("draining the workers failed", f))
        return d.addCallback(lambda _: None)
