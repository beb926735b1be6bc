"""The result flusher: reports finished jobs to Redis in batches.

Completions and failed attempts collect here and go out together every
``flush_interval`` (or at once when a chunk is full), a few script calls for many jobs.
A result waiting to be reported keeps its job's lease and counts against the worker's
slots (``pending``; see ``claiming``), so a worker never holds more than its
concurrency and one claim batch of leases, however long Redis is away.

A report Redis did not answer (it failed, or its reply was lost) is sent again,
unchanged and before anything else, the moment Redis answers (the outage pause ends
early, see ``outage``). The scripts remember the last report of each flusher, and a job
the token whose outcome it took, so a report applied before its reply was lost is a
success the second time, not a refusal. Jobs waiting to be reported keep their leases,
because ``held()`` counts them among the jobs the heartbeat renews.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from installsure.jobs import metrics
from installsure.jobs._deferreds import observe
from installsure.jobs.events import QueueJobEvents
from installsure.jobs.keys import QueueKeys
from installsure.jobs.lost import LostLeases
from installsure.jobs.outage import Outage
from installsure.jobs.outcome import FailedAttempt
from installsure.jobs.scripts import Scripts
from installsure.jobs.settings import QueueSettings
from installsure.jobs.wire import ClaimedJob
from installsure.redis.interfaces import LuaScript, RedisArg

log = Logger(namespace="installsure.jobs.worker")

FLUSH_CHUNK = 500
"""Results (and heartbeat leases) per script call: bounded script time."""


@define
class _Report:
    """One script call reporting results: completions or failed attempts, not both."""

    script: LuaScript
    number: int
    args: list[RedisArg]
    done: list[tuple[ClaimedJob, str]] = field(factory=list)
    failed: list[FailedAttempt] = field(factory=list)

    def jobs(self) -> list[ClaimedJob]:
        return [job for job, _ in self.done] + [attempt.job for attempt in self.failed]


class ResultFlusher:
    """Collects the results of one queue's jobs and reports them (module docstring).

    ``answer_ttl``: how long Redis remembers the answer to a report, so that one sent
    again after an outage of up to that long is recognised.
    """

    def __init__(
        self,
        queue: str,
        worker_id: str,
        *,
        scripts: Scripts,
        keys: QueueKeys,
        settings: QueueSettings,
        flush_interval: float,
        answer_ttl: float,
        reactor: IReactorTime,
        outage: Outage,
        events: QueueJobEvents,
        counters: metrics.QueueCounters,
        status_changed: Callable[[str], None],
        lost: LostLeases,
        on_reported: Callable[[], None],
    ) -> None:
        self._queue = queue
        self._lost = lost
        self._on_reported = on_reported
        self._scripts = scripts
        self._keys = keys
        self._qs = settings
        self._flush_interval = flush_interval
        self._reactor = reactor
        self._outage = outage
        self._events = events
        self._counters = counters
        self._status_changed = status_changed
        # Names this flusher's reports in Redis: unique per worker and queue.
        self._id = f"{worker_id}|{secrets.token_hex(6)}"
        self._answer_ttl = round(answer_ttl * 1000)
        self._numbers = 0
        self._done: list[tuple[ClaimedJob, str]] = []  # (job, result JSON)
        self._failed: list[FailedAttempt] = []
        # The report sent and not answered yet (or whose answer was lost).
        self._unconfirmed: _Report | None = None
        self._flush_call: IDelayedCall | None = None
        self._flushing: Deferred[None] | None = None
        self._deadline = float("inf")  # set by flush_all(): give up reporting after it

    # --- what the runner hands in

    def completed(self, job: ClaimedJob, result_json: str) -> None:
        self._done.append((job, result_json))
        self._schedule()

    def failed(self, attempt: FailedAttempt) -> None:
        self._failed.append(attempt)
        self._schedule()

    @property
    def pending(self) -> int:
        """Results waiting to be reported: each keeps its job's slot (and lease)."""
        count = len(self._done) + len(self._failed)
        if self._unconfirmed is not None:
            count += len(self._unconfirmed.done) + len(self._unconfirmed.failed)
        return count

    def held(self) -> list[ClaimedJob]:
        """Jobs whose results Redis has not accepted yet: their leases must live on."""
        held = [job for job, _ in self._done]
        held += [attempt.job for attempt in self._failed]
        if self._unconfirmed is not None:
            held += self._unconfirmed.jobs()
        return held

    def forget(self, token: str) -> ClaimedJob | None:
        """Drop the result of the lease ``token`` waiting to be reported (the lease is
        lost, so it would be refused); returns its job, or None when none waits here. A
        result in the report on its way stays: Redis' answer tells."""
        for index, (job, _) in enumerate(self._done):
            if job.token == token:
                del self._done[index]
                return job
        for index, attempt in enumerate(self._failed):
            if attempt.job.token == token:
                del self._failed[index]
                return attempt.job
        return None

    def flush_now(self) -> None:
        """Report what waits without waiting for ``flush_interval`` (the claim loop
        waits for these slots); a report on its way takes it next."""
        self._start()

    async def flush_all(self, deadline: float) -> None:
        """Report everything, trying until ``deadline`` (reactor seconds) at the latest."""
        self._deadline = deadline
        while self._has_work() or self._flushing is not None:
            if self._reactor.seconds() >= deadline:
                return
            if self._flushing is None:
                self._start()
            if self._flushing is not None:
                await observe(self._flushing)

    # --- flushing

    def _has_work(self) -> bool:
        return bool(self._unconfirmed is not None or self._done or self._failed)

    def _schedule(self) -> None:
        pending = len(self._done) + len(self._failed)
        if pending >= FLUSH_CHUNK:
            self._start()
        elif self._flush_call is None or not self._flush_call.active():
            self._flush_call = self._reactor.callLater(self._flush_interval, self._start)

    def _start(self) -> None:
        if self._flushing is not None:
            return  # the running flush picks up what arrived meanwhile
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if not self._has_work():
            return
        self._flushing = Deferred.fromCoroutine(self._flush())
        self._flushing.addErrback(
            lambda f: log.failure("reporting results of {queue} failed", f, queue=self._queue)
        )

    async def _flush(self) -> None:
        try:
            while self._has_work():
                if not await self._flush_once():
                    if self._reactor.seconds() > self._deadline:
                        return
                    await self._outage.pause(self._reactor)
        finally:
            self._flushing = None

    def _next_report(self) -> _Report:
        """The unconfirmed report if there is one (it goes again, unchanged), else a
        new one: a chunk of completions, or of failed attempts when there are none."""
        if self._unconfirmed is not None:
            return self._unconfirmed
        qs = self._qs
        self._numbers += 1
        tail: list[RedisArg] = [self._id, self._numbers, self._answer_ttl]
        if self._done:
            done, self._done = self._done[:FLUSH_CHUNK], self._done[FLUSH_CHUNK:]
            args: list[RedisArg] = [
                qs.keep_completed_count, round(qs.keep_completed_age * 1000), *tail
            ]
            for job, result in done:
                args += (job.id, job.token, result, job.unique_key or "")
            report = _Report(self._scripts.complete, self._numbers, args, done=done)
        else:
            failed, self._failed = self._failed[:FLUSH_CHUNK], self._failed[FLUSH_CHUNK:]
            batch = json.dumps([attempt.script_row() for attempt in failed])
            args = [qs.keep_dead_count, round(qs.keep_dead_age * 1000), batch, *tail]
            report = _Report(self._scripts.fail, self._numbers, args, failed=failed)
        self._unconfirmed = report
        return report

    async def _flush_once(self) -> bool:
        """Send one report; False (it stays unconfirmed, for a retry) if Redis failed."""
        report = self._next_report()
        try:
            refused = await report.script([self._keys.base], report.args)
        except Exception as e:  # Redis failed: the same report goes again later
            self._outage.failed(e)
            return False
        self._unconfirmed = None
        self._outage.succeeded()
        self._accepted(report, set(refused))
        self._on_reported()  # their slots are free now
        return True

    def _accepted(self, report: _Report, refused: set[str]) -> None:
        if refused:
            for job in report.jobs():
                if job.id in refused:
                    self._lost.lost(job, "its result was refused")
        done = [job for job, _ in report.done if job.id not in refused]
        failed = [attempt for attempt in report.failed if attempt.job.id not in refused]
        if done:
            self._counters.completed(job.type for job in done)
        if self._events.transitions:
            for job in done:
                self._events.transition(job.id, job.type, "completed")
            for attempt in failed:
                self._events.transition(
                    attempt.job.id, attempt.job.type, attempt.state, error=attempt.message
                )
        self._status_changed(self._queue)
