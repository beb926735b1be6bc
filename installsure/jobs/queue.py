"""The producer side: enqueue jobs, and look at or manage what is queued."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from attrs import frozen
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.jobs import metrics
from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.errors import (
    InvalidOption,
    InvalidPayload,
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
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.scripts import Scripts
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.wire import JobOptions
from installsure.redis.interfaces import RedisArg, RedisCommands

log = Logger(namespace="installsure.jobs.queue")

MAX_PRIORITY = 1_000_000
MAX_KEY_LENGTH = 256
_BULK_CHUNK = 1000  # jobs per enqueue script call: bounded script time
_CHUNKS_IN_FLIGHT = 4


@frozen
class JobSpec:
    """One job of ``enqueue_bulk`` with options of its own."""

    payload: object
    delay: float | None = None
    priority: int | None = None
    unique_key: str | None = None
    idempotency_key: str | None = None


def _check_key(name: str, value: str | None) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH:
        raise InvalidOption(
            f"{name} must be a non-empty string of at most {MAX_KEY_LENGTH} characters"
        )
    return value


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
        spec = JobSpec(payload, delay, priority, unique_key, idempotency_key)
        d = self.enqueue_bulk(
            job_type, [spec], attempts=attempts, backoff=backoff, timeout=timeout
        )
        return d.addCallback(lambda ids: ids[0])

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
        try:
            jt = job_type if isinstance(job_type, JobType) else self.registry.get(job_type)
            qs = self.settings.queue(jt.queue)
            opts = self._options(jt, qs, attempts, backoff, timeout)
            rows = self._job_rows(jt, jobs, delay, priority)
        except JobsError as e:
            return defer.fail(e)
        return defer.ensureDeferred(self._write(jt, opts, rows))

    def _options(
        self,
        jt: JobType,
        qs: QueueSettings,
        attempts: int | None,
        backoff: BackoffPolicy | None,
        timeout: float | None,
    ) -> str:
        attempts = attempts if attempts is not None else jt.attempts or qs.attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise InvalidOption(f"attempts must be an integer of at least 1, got {attempts!r}")
        backoff = backoff or jt.backoff or BackoffPolicy(
            qs.backoff, qs.backoff_delay, qs.backoff_max_delay
        )
        timeout = timeout if timeout is not None else jt.timeout
        timeout = qs.timeout if timeout is None else timeout
        if not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidOption(f"timeout must be 0 (none) or more seconds, got {timeout!r}")
        return JobOptions(attempts=attempts, backoff=backoff, timeout=timeout).to_json()

    def _job_rows(
        self,
        jt: JobType,
        jobs: Iterable[object],
        delay: float | None,
        priority: int | None,
    ) -> list[list[object]]:
        """[id, data, priority, delay ms, unique key, idempotency key] per job."""
        rows: list[list[object]] = []
        problems: list[str] = []
        for index, item in enumerate(jobs):
            spec = item if isinstance(item, JobSpec) else JobSpec(item)
            try:
                data = jt.encode_payload(spec.payload)
                d = spec.delay if spec.delay is not None else delay
                p = spec.priority if spec.priority is not None else priority
                p = jt.priority if p is None else p
                if d is not None and (not isinstance(d, int | float) or not 0 <= d < float("inf")):
                    raise InvalidOption(f"delay must be 0 or more seconds, got {d!r}")
                if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p <= MAX_PRIORITY:
                    raise InvalidOption(
                        f"priority must be an integer from 0 (first) to {MAX_PRIORITY}, got {p!r}"
                    )
                uniq = _check_key("unique_key", spec.unique_key)
                idem = _check_key("idempotency_key", spec.idempotency_key)
            except JobsError as e:
                problems.append(f"job {index}: {e}")
                continue
            rows.append([str(uuid.uuid4()), data, p, round((d or 0) * 1000), uniq, idem])
        if problems:
            raise InvalidPayload(jt.name, problems)
        return rows

    async def _write(self, jt: JobType, opts: str, rows: list[list[object]]) -> list[str]:
        qs = self.settings.queue(jt.queue)
        keys = self._keys[jt.queue]
        head: list[RedisArg] = [
            round(self.settings.idempotency_ttl * 1000), qs.priority_aging * 1000,
            jt.name, opts, jt.schema_version,
        ]
        ids = [str(row[0]) for row in rows]
        # A few chunks in flight at once: the round trips overlap, Redis stays shared.
        limit = defer.DeferredSemaphore(_CHUNKS_IN_FLIGHT)

        def send(start: int) -> Deferred[Any]:
            chunk = json.dumps(rows[start:start + _BULK_CHUNK], separators=(",", ":"))
            return self.scripts.enqueue([keys.base], [*head, chunk])

        replies = await defer.gatherResults(
            [limit.run(send, start) for start in range(0, len(rows), _BULK_CHUNK)],
            consumeErrors=True,
        ).addErrback(_unwrap_first_error)
        duplicates = 0
        for chunk_index, dups in enumerate(replies):
            for n in range(0, len(dups), 2):
                ids[chunk_index * _BULK_CHUNK + int(dups[n]) - 1] = dups[n + 1]
                duplicates += 1
        new = len(ids) - duplicates
        if new:
            metrics.ENQUEUED.labels(jt.queue, jt.name).inc(new)
            self.status.changed(jt.queue)
            if self.settings.job_events:
                existing = {dups[n + 1] for dups in replies for n in range(0, len(dups), 2)}
                created = set(ids) - existing
                topic = job_topic(jt.queue)
                for job_id in ids:
                    if job_id in created:
                        self.publisher.publish(
                            topic, {"jobId": job_id, "type": jt.name, "state": "queued"}
                        )
        if duplicates:
            metrics.DUPLICATES.labels(jt.queue).inc(duplicates)
        return ids

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


def _unwrap_first_error(failure: Any) -> Any:
    """gatherResults wraps errors in FirstError; callers want the error itself."""
    if isinstance(failure.value, defer.FirstError):
        return failure.value.subFailure
    return failure
