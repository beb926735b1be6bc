"""The result flusher: reports finished jobs to Redis in batches.

Completions and failed attempts collect here and go out together every
``flush_interval`` (or at once when a chunk is full), a few script calls for many jobs.
Results Redis did not accept (it failed) stay and go out again once it answers; their
leases are renewed meanwhile, because ``held()`` counts them among the jobs the
heartbeat keeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from installsure.jobs import metrics
from installsure.jobs._deferreds import observe
from installsure.jobs.events import QueueJobEvents
from installsure.jobs.keys import QueueKeys
from installsure.jobs.outage import Outage
from installsure.jobs.outcome import FailedAttempt
from installsure.jobs.scripts import Scripts
from installsure.jobs.settings import QueueSettings
from installsure.jobs.wire import ClaimedJob

log = Logger(namespace="installsure.jobs.worker")

FLUSH_CHUNK = 500
"""Results (and heartbeat leases) per script call: bounded script time."""


class ResultFlusher:
    """Collects the results of one queue's jobs and reports them (module docstring)."""

    def __init__(
        self,
        queue: str,
        *,
        scripts: Scripts,
        keys: QueueKeys,
        settings: QueueSettings,
        flush_interval: float,
        reactor: IReactorTime,
        outage: Outage,
        events: QueueJobEvents,
        counters: metrics.QueueCounters,
        status_changed: Callable[[str], None],
    ) -> None:
        self._queue = queue
        self._scripts = scripts
        self._keys = keys
        self._qs = settings
        self._flush_interval = flush_interval
        self._reactor = reactor
        self._outage = outage
        self._events = events
        self._counters = counters
        self._status_changed = status_changed
        self._done: list[tuple[ClaimedJob, str]] = []  # (job, result JSON)
        self._failed: list[FailedAttempt] = []
        self._in_flush: dict[str, ClaimedJob] = {}
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

    def held(self) -> list[ClaimedJob]:
        """Jobs whose results Redis has not accepted yet: their leases must live on."""
        held = [job for job, _ in self._done]
        held += [attempt.job for attempt in self._failed]
        held += list(self._in_flush.values())
        return held

    async def flush_all(self, deadline: float) -> None:
        """Report everything, trying until ``deadline`` (reactor seconds) at the latest."""
        self._deadline = deadline
        while (self._done or self._failed or self._flushing is not None) and (
            self._reactor.seconds() < deadline
        ):
            if self._flushing is None:
                self._start()
            if self._flushing is not None:
                await observe(self._flushing)

    # --- flushing

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
        if not self._done and not self._failed:
            return
        self._flushing = Deferred.fromCoroutine(self._flush())
        self._flushing.addErrback(
            lambda f: log.failure("reporting results of {queue} failed", f, queue=self._queue)
        )

    async def _flush(self) -> None:
        try:
            while self._done or self._failed:
                if not await self._flush_once():
                    if self._reactor.seconds() > self._deadline:
                        return
                    await task.deferLater(self._reactor, self._outage.delay)
        finally:
            self._flushing = None

    async def _flush_once(self) -> bool:
        """Report one chunk of results; False (results kept for a retry) if Redis failed."""
        done, self._done = self._done[:FLUSH_CHUNK], self._done[FLUSH_CHUNK:]
        failed, self._failed = self._failed[:FLUSH_CHUNK], self._failed[FLUSH_CHUNK:]
        for job, _ in done:
            self._in_flush[job.id] = job
        for attempt in failed:
            self._in_flush[attempt.job.id] = attempt.job
        refused: list[str] = []
        accepted_done: list[tuple[ClaimedJob, str]] = []
        qs = self._qs
        try:
            if done:
                batch = json.dumps([
                    [job.id, job.token, result, job.unique_key or ""] for job, result in done
                ])
                refused += await self._scripts.complete(
                    [self._keys.base],
                    [qs.keep_completed_count, round(qs.keep_completed_age * 1000), batch],
                )
                accepted_done, done = done, []
            if failed:
                batch = json.dumps([attempt.script_row() for attempt in failed])
                refused += await self._scripts.fail(
                    [self._keys.base],
                    [qs.keep_dead_count, round(qs.keep_dead_age * 1000), batch],
                )
        except Exception as e:  # keep what was not accepted and try again later
            self._done[:0] = done
            self._failed[:0] = failed
            self._outage.failed(e)
            self._accepted(accepted_done, [], set(refused))
            return False
        finally:
            self._in_flush.clear()
        self._outage.succeeded()
        self._accepted(accepted_done, failed, set(refused))
        return True

    def _accepted(
        self, done: list[tuple[ClaimedJob, str]], failed: list[FailedAttempt], refused: set[str]
    ) -> None:
        for job_id in refused:
            log.warn(
                "result of job {job_id} of {queue} refused: its lease was lost (it stalled "
                "and runs or ran elsewhere)", job_id=job_id, queue=self._queue,
            )
        if refused:
            metrics.LEASE_LOST.labels(self._queue).inc(len(refused))
        self._counters.completed(job.type for job, _ in done if job.id not in refused)
        if self._events.transitions:
            for job, _ in done:
                if job.id not in refused:
                    self._events.transition(job.id, job.type, "completed")
            for attempt in failed:
                if attempt.job.id not in refused:
                    self._events.transition(
                        attempt.job.id, attempt.job.type, attempt.state, error=attempt.message
                    )
        self._status_changed(self._queue)

