"""The producer side: enqueue jobs (checked and written by ``producer``), and look at
or manage what is queued."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.jobs import metrics
from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.errors import (
    InvalidOption,
    InvalidState,
    JobNotFound,
    JobsError,
    JobStateConflict,
)
from installsure.jobs.events import (
    JobEventPublisher,
    LoggingJobEventPublisher,
    StatusReporter,
    job_topic,
)
from installsure.jobs.keys import STATE_SETS, STATES, QueueKeys
from installsure.jobs.model import JobRecord, QueueCounts
from installsure.jobs.producer import Producer
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.scripts import Scripts
from installsure.jobs.settings import JobsSettings
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.jobs.queue")

class JobQueue:
    """Enqueue jobs of registered types and manage the queues of ``settings``.

    Every method returns a Deferred; errors callers can act on are ``JobsError``
    subclasses (UnknownQueue, UnknownJobType, InvalidPayload, InvalidOption,
    JobNotFound, JobStateConflict, InvalidState); Redis outages are RedisUnavailable.
    """

    def __init__(
        self,
        redis: RedisCommands,
        registry: JobRegistry,
        settings: JobsSettings,
        publisher: JobEventPublisher | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.redis = redis
        self.registry = registry
        self.settings = settings
        self.publisher: JobEventPublisher = publisher or LoggingJobEventPublisher()
        self.scripts = Scripts(redis)
        self._keys = {name: QueueKeys.for_queue(redis, name) for name in settings.queues}
        self.status = StatusReporter(
            lambda q: self.stats(q).addCallback(QueueCounts.to_json),
            self.publisher, settings.status_interval, reactor,
        )
        for job_type in registry:
            settings.queue(job_type.queue)  # an unknown queue fails here, at start-up
        self._producer = Producer(
            registry=registry, settings=settings, scripts=self.scripts, keys=self._keys,
            publisher=self.publisher, status=self.status, reactor=reactor,
        )

    @property
    def queues(self) -> list[str]:
        return list(self.settings.queues)

    def keys(self, queue: str) -> QueueKeys:
        self.settings.queue(queue)
        return self._keys[queue]

    # --- producing

    def enqueue(
        self,
        job_type: str | JobType,
        payload: object,
        *,
        delay: float | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        idempotency_key: str | None = None,
        attempts: int | None = None,
        backoff: BackoffPolicy | None = None,
        timeout: float | None = None,
    ) -> Deferred[str]:
        """Validate and enqueue one job; fires with its id (or, when ``unique_key`` or
        ``idempotency_key`` matches a job already there, with that job's id)."""
        return self._producer.enqueue(
            job_type, payload, delay=delay, priority=priority, unique_key=unique_key,
            idempotency_key=idempotency_key, attempts=attempts, backoff=backoff,
            timeout=timeout,
        )

    def enqueue_bulk(
        self,
        job_type: str | JobType,
        jobs: Iterable[object],
        *,
        delay: float | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        backoff: BackoffPolicy | None = None,
        timeout: float | None = None,
    ) -> Deferred[list[str]]:
        """Enqueue many jobs of one type (payloads, or ``JobSpec`` for per-job options)
        in few script calls. Every payload is validated before anything is written."""
        return self._producer.enqueue_bulk(
            job_type, jobs, delay=delay, priority=priority, attempts=attempts,
            backoff=backoff, timeout=timeout,
        )

    # --- looking and managing

    def stats(self, queue: str) -> Deferred[QueueCounts]:
        """Counts per state, paused flag, live workers and recent throughput."""
        try:
            keys = self.keys(queue)
        except JobsError as e:
            return defer.fail(e)
        liveness = round(self.settings.liveness_ttl * 1000)

        def counts(reply: Sequence[int]) -> QueueCounts:
            waiting, active, completed, failed, delayed, dead, paused, workers = reply[:8]
            this_minute, last_minute = reply[8], reply[9]
            # A rolling minute: this minute so far plus the matching share of the last.
            share = 1.0 - (time.time() % 60.0) / 60.0
            counts = QueueCounts(
                queue, int(waiting), int(active), int(completed), int(failed), int(delayed),
                int(dead), bool(paused), int(workers), int(this_minute + last_minute * share),
            )
            for state in STATES:
                metrics.DEPTH.labels(queue, state).set(getattr(counts, state))
            return counts

        return self.scripts.counts([keys.base], [liveness]).addCallback(counts)

    def get(self, queue: str, job_id: str) -> Deferred[JobRecord]:
        """The job, or JobNotFound."""
        try:
            keys = self.keys(queue)
        except JobsError as e:
            return defer.fail(e)

        async def record() -> JobRecord:
            flat = _pairs_to_list(await self.redis.execute("HGETALL", keys.job(job_id)))
            if not flat:
                raise JobNotFound(queue, job_id)
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            fields["id"] = job_id
            fields["lease"] = await self.redis.execute("HGET", keys.leases, job_id) or ""
            return JobRecord.from_hash(queue, fields)

        return defer.ensureDeferred(record())

    def list(
        self, queue: str, state: str, page: int = 1, per_page: int = 20
    ) -> Deferred[tuple[list[JobRecord], int]]:
        """One page of the jobs in ``state`` (finished ones newest first) and the total."""
        try:
            keys = self.keys(queue)
            if state not in STATE_SETS:
                raise InvalidState(state, STATES)
            if not isinstance(page, int) or page < 1:
                raise InvalidOption(f"page must be an integer of at least 1, got {page!r}")
            if not isinstance(per_page, int) or not 1 <= per_page <= 1000:
                raise InvalidOption(f"per_page must be an integer from 1 to 1000, got {per_page!r}")
        except JobsError as e:
            return defer.fail(e)
        start = (page - 1) * per_page
        newest_first = "1" if state in ("completed", "dead") else "0"

        def records(reply: Sequence[Any]) -> tuple[list[JobRecord], int]:
            jobs = []
            for raw in reply[1:]:
                flat = _pairs_to_list(raw)
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                if "type" in fields:  # removed between ZRANGE and HGETALL: skip
                    jobs.append(JobRecord.from_hash(queue, fields))
            return jobs, int(reply[0])

        d = self.scripts.list(
            [keys.base], [STATE_SETS[state], start, start + per_page - 1, newest_first]
        )
        return d.addCallback(records)

    def pause(self, queue: str) -> Deferred[None]:
        """Stop every worker claiming from ``queue``; running jobs finish."""
        return self._manage(queue, self._pause, queue)

    def resume(self, queue: str) -> Deferred[None]:
        return self._manage(queue, self._resume, queue)

    def retry(self, queue: str, job_id: str) -> Deferred[None]:
        """Run a dead, failed, delayed or completed job again now, with fresh attempts."""
        return self._manage(queue, self._retry, queue, job_id)

    def remove(self, queue: str, job_id: str) -> Deferred[None]:
        """Delete a job that is not running (JobStateConflict when it is)."""
        return self._manage(queue, self._remove, queue, job_id)

    def retry_dead_all(self, queue: str) -> Deferred[int]:
        """Move every dead job back to waiting; fires with how many."""
        return self._manage(queue, self._retry_dead_all, queue)

    def purge(self, queue: str, state: str) -> Deferred[int]:
        """Delete every job in ``state`` (not ``active``); fires with how many."""
        return self._manage(queue, self._purge, queue, state)

    def _manage(self, queue: str, action: Any, *args: Any) -> Deferred[Any]:
        try:
            self.keys(queue)
        except JobsError as e:
            return defer.fail(e)
        return defer.ensureDeferred(action(*args))

    async def _pause(self, queue: str) -> None:
        await self.redis.execute("HSET", self._keys[queue].base + ":meta", "paused", "1")
        log.info("queue {queue} paused", queue=queue)
        self.status.changed(queue)

    async def _resume(self, queue: str) -> None:
        keys = self._keys[queue]
        await self.redis.execute("HDEL", keys.base + ":meta", "paused")
        # Workers paused on the marker wake up at once instead of at their next timeout.
        await self.redis.execute("RPUSH", keys.marker, "1")
        log.info("queue {queue} resumed", queue=queue)
        self.status.changed(queue)

    async def _retry(self, queue: str, job_id: str) -> None:
        qs = self.settings.queue(queue)
        outcome = await self.scripts.retry(
            [self._keys[queue].base], [job_id, qs.priority_aging * 1000]
        )
        self._check(queue, job_id, outcome, "retry")
        self._event(queue, job_id, "queued")

    async def _remove(self, queue: str, job_id: str) -> None:
        outcome = await self.scripts.remove([self._keys[queue].base], [job_id])
        self._check(queue, job_id, outcome, "remove")
        self._event(queue, job_id, "removed")

    async def _retry_dead_all(self, queue: str) -> int:
        qs = self.settings.queue(queue)
        total = 0
        while True:
            moved = int(await self.scripts.retry_dead(
                [self._keys[queue].base], [qs.priority_aging * 1000]
            ))
            total += moved
            if moved < 1000:
                break
        if total:
            log.info("{count} dead jobs of queue {queue} retried", count=total, queue=queue)
            self.status.changed(queue)
        return total

    async def _purge(self, queue: str, state: str) -> int:
        if state not in STATE_SETS or state == "active":
            raise InvalidState(state, [s for s in STATES if s != "active"])
        total = 0
        while True:
            removed = int(await self.scripts.purge([self._keys[queue].base], [STATE_SETS[state]]))
            total += removed
            if removed < 1000:
                break
        if total:
            log.info("{count} {state} jobs of queue {queue} purged",
                     count=total, state=state, queue=queue)
            self.status.changed(queue)
        return total

    def _check(self, queue: str, job_id: str, outcome: str, operation: str) -> None:
        if outcome == "missing":
            raise JobNotFound(queue, job_id)
        if outcome != "ok":
            raise JobStateConflict(queue, job_id, outcome, operation)
        self.status.changed(queue)

    def _event(self, queue: str, job_id: str, state: str) -> None:
        self.publisher.publish(job_topic(queue), {"jobId": job_id, "state": state})


def _pairs_to_list(reply: Any) -> list[str]:
    """HGETALL as a flat list whether the client returned a list or a dict."""
    if isinstance(reply, dict):
        return [x for pair in reply.items() for x in pair]
    return list(reply)


