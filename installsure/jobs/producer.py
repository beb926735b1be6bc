"""Enqueueing: jobs checked here, then written by the ``enqueue`` script.

``enqueue_bulk`` sends its jobs in chunks of up to a thousand per script call, a few
chunks in flight at once. ``enqueue`` (one job) joins the jobs other callers enqueue
in the same reactor turn: they go to Redis together, in one script call per job type
and options, and each caller's Deferred fires with its own job's id once Redis has
the whole batch (or fails with the batch's error). A caller sees one job enqueued as
before; many callers at once cost one round trip instead of one each.

A batch goes at the end of the turn. When several single enqueues are under way (at
least 8 were waiting for Redis or gathering at the end of the last turn), a batch
goes as soon as it holds half of them, and a smaller one left at the end of a turn
waits, while others are on their way, for the callers their answer brings: callers
that enqueue again as soon as their job is in (a steady stream) then keep two batches
of about equal size going, and Redis writes one while this process prepares the
other. Fewer single enqueues at once go at the end of every turn, as they come.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from attrs import frozen
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from installsure.bounded import remember
from installsure.jobs import metrics
from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.errors import InvalidOption, InvalidPayload, JobsError
from installsure.jobs.events import JobEventPublisher, StatusReporter, job_topic
from installsure.jobs.keys import QueueKeys
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.scripts import Scripts
from installsure.jobs.settings import JobsSettings
from installsure.jobs.wire import JobOptions
from installsure.redis.interfaces import RedisArg

MAX_PRIORITY = 1_000_000
MAX_KEY_LENGTH = 256
_BULK_CHUNK = 1000  # jobs per enqueue script call: bounded script time
_CHUNKS_IN_FLIGHT = 4
_OPTIONS_CACHE_SIZE = 1000
_IDS_AT_ONCE = 256  # ids made ahead for single enqueues, from one random read
_LEAST_HALF = 4  # single enqueues under way below twice this: one batch per turn

Row = list[RedisArg]
"""One job as the script takes it: id, data, priority, delay ms, unique key, idem key."""


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


def new_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, from one read of the OS's random
    source: several times faster than ``str(uuid.uuid4())`` each."""
    raw = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = raw[start:start + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return ids


@frozen
class _Waiting:
    """Single enqueues of one job type and options, waiting for the end of the turn."""

    job_type: JobType
    options: str
    rows: list[Row]
    callers: list[Deferred[str]]


class Producer:
    """Checks and writes new jobs for a JobQueue (module docstring)."""

    def __init__(
        self,
        *,
        registry: JobRegistry,
        settings: JobsSettings,
        scripts: Scripts,
        keys: dict[str, QueueKeys],
        publisher: JobEventPublisher,
        status: StatusReporter,
        reactor: IReactorTime,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._scripts = scripts
        self._keys = keys
        self._publisher = publisher
        self._status = status
        self._reactor = reactor
        self._options: dict[tuple[Any, ...], tuple[JobType, str]] = {}
        self._ids: list[str] = []  # made ahead for single enqueues
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        self._flush_call: IDelayedCall | None = None
        self._unanswered = 0  # single enqueues sent whose batch Redis has not answered
        # Single enqueues under way (sent and unanswered, or gathering) at the end of
        # the last turn: what a batch is half of (module docstring).
        self._under_way = 0

    # --- the two ways in

    def enqueue(
        self,
        job_type: str | JobType,
        payload: object,
        *,
        delay: float | None,
        priority: int | None,
        unique_key: str | None,
        idempotency_key: str | None,
        attempts: int | None,
        backoff: BackoffPolicy | None,
        timeout: float | None,
    ) -> Deferred[str]:
        try:
            jt = self._job_type(job_type)
            options = self._options_json(jt, attempts, backoff, timeout)
        except JobsError as e:
            return defer.fail(e)
        try:
            row = self._row(
                jt, payload, delay=delay, priority=jt.priority if priority is None else priority,
                unique_key=unique_key, idempotency_key=idempotency_key,
            )
        except JobsError as e:  # worded as enqueue_bulk words it, for one job
            return defer.fail(InvalidPayload(jt.name, [f"job 0: {e}"]))
        if not self._ids:
            self._ids = new_ids(_IDS_AT_ONCE)
        row[0] = self._ids.pop()
        waiting = self._waiting.get((jt.name, options))
        if waiting is None:
            waiting = self._waiting[(jt.name, options)] = _Waiting(jt, options, [], [])
        d: Deferred[str] = Deferred()
        waiting.rows.append(row)
        waiting.callers.append(d)
        half = self._under_way // 2
        if half >= _LEAST_HALF and len(waiting.rows) >= half:
            # Half of what is under way: the next batch gathers while this one is on
            # its way, and Redis runs one while this process prepares the other.
            del self._waiting[(jt.name, options)]
            self._send(waiting)
        elif self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush_waiting)
        return d

    def enqueue_bulk(
        self,
        job_type: str | JobType,
        jobs: Iterable[object],
        *,
        delay: float | None,
        priority: int | None,
        attempts: int | None,
        backoff: BackoffPolicy | None,
        timeout: float | None,
    ) -> Deferred[list[str]]:
        try:
            jt = self._job_type(job_type)
            options = self._options_json(jt, attempts, backoff, timeout)
            rows = self._rows(jt, jobs, delay, priority)
        except JobsError as e:
            return defer.fail(e)
        return defer.ensureDeferred(self._write(jt, options, rows))

    # --- checking

    def _job_type(self, job_type: str | JobType) -> JobType:
        jt = job_type if isinstance(job_type, JobType) else self._registry.get(job_type)
        self._settings.queue(jt.queue)
        return jt

    def _options_json(
        self,
        jt: JobType,
        attempts: int | None,
        backoff: BackoffPolicy | None,
        timeout: float | None,
    ) -> str:
        """The options every job of this call is stored with, as JSON; the same inputs
        give the same text, so it is worked out once and remembered."""
        # By the type's identity (hashing a JobType hashes all its fields); the entry
        # keeps the type, so an id reused by another object never matches.
        key = (id(jt), attempts, backoff, timeout)
        try:
            known = self._options.get(key)
        except TypeError:  # an unhashable value: it is checked, and refused, below
            known = None
        if known is not None and known[0] is jt:
            return known[1]
        qs = self._settings.queue(jt.queue)
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
        text = JobOptions(attempts=attempts, backoff=backoff, timeout=timeout).to_json()
        remember(self._options, key, (jt, text), _OPTIONS_CACHE_SIZE)
        return text

    def _rows(
        self,
        jt: JobType,
        jobs: Iterable[object],
        delay: float | None,
        priority: int | None,
    ) -> list[Row]:
        """One row per job; every payload and option is checked before anything is
        written, and InvalidPayload lists every problem."""
        rows: list[Row] = []
        problems: list[str] = []
        default_priority = jt.priority if priority is None else priority
        for index, item in enumerate(jobs):
            try:
                if isinstance(item, JobSpec):
                    p = item.priority if item.priority is not None else default_priority
                    d = item.delay if item.delay is not None else delay
                    rows.append(self._row(
                        jt, item.payload, delay=d, priority=p, unique_key=item.unique_key,
                        idempotency_key=item.idempotency_key,
                    ))
                else:
                    rows.append(self._row(jt, item, delay=delay, priority=default_priority))
            except JobsError as e:
                problems.append(f"job {index}: {e}")
        if problems:
            raise InvalidPayload(jt.name, problems)
        for row, job_id in zip(rows, new_ids(len(rows)), strict=True):
            row[0] = job_id
        return rows

    @staticmethod
    def _row(
        jt: JobType,
        payload: object,
        *,
        delay: float | None,
        priority: object,
        unique_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Row:
        """One job's row, its id left empty; JobsError says what is wrong with it."""
        d, p = delay, priority
        data = jt.encode_payload(payload)
        uniq = _check_key("unique_key", unique_key) if unique_key is not None else ""
        idem = (
            _check_key("idempotency_key", idempotency_key) if idempotency_key is not None else ""
        )
        if d is not None and (not isinstance(d, int | float) or not 0 <= d < float("inf")):
            raise InvalidOption(f"delay must be 0 or more seconds, got {d!r}")
        if type(p) is not int or not 0 <= p <= MAX_PRIORITY:
            raise InvalidOption(
                f"priority must be an integer from 0 (first) to {MAX_PRIORITY}, got {p!r}"
            )
        return ["", data, p, round(d * 1000) if d else 0, uniq, idem]

    # --- writing

    def _flush_waiting(self) -> None:
        """The end of a turn: send what gathered, except a small batch while others are
        on their way (module docstring); it joins the callers of their answers, and
        every answer looks again, so it goes at the latest when none is left."""
        self._flush_call = None
        waiting, self._waiting = self._waiting, {}
        self._under_way = self._unanswered + sum(len(b.rows) for b in waiting.values())
        half = self._under_way // 2
        for key, batch in waiting.items():
            if half >= _LEAST_HALF and self._unanswered and len(batch.rows) < half:
                self._wait_longer(key, batch)
            else:
                self._send(batch)

    def _wait_longer(self, key: tuple[str, str], batch: _Waiting) -> None:
        later = self._waiting.get(key)  # (a caller may have enqueued again meanwhile)
        if later is None:
            self._waiting[key] = batch
        else:
            later.rows[:0] = batch.rows
            later.callers[:0] = batch.callers

    def _send(self, batch: _Waiting) -> None:
        self._unanswered += len(batch.rows)
        d = defer.ensureDeferred(self._write(batch.job_type, batch.options, batch.rows))
        d.addCallbacks(
            self._answer, self._fail,
            callbackArgs=(batch.callers,), errbackArgs=(batch.callers,),
        )

    def _answered(self, count: int) -> None:
        self._unanswered -= count
        if self._waiting and self._flush_call is None:  # a batch waits for this answer
            self._flush_call = self._reactor.callLater(0, self._flush_waiting)

    def _answer(self, ids: list[str], callers: list[Deferred[str]]) -> None:
        self._answered(len(callers))
        for caller, job_id in zip(callers, ids, strict=True):
            if not caller.called:  # a caller may have cancelled its wait
                caller.callback(job_id)

    def _fail(self, failure: Failure, callers: list[Deferred[str]]) -> None:
        self._answered(len(callers))
        for caller in callers:
            if not caller.called:
                caller.errback(failure)

    async def _write(self, jt: JobType, options: str, rows: list[Row]) -> list[str]:
        qs = self._settings.queue(jt.queue)
        keys = self._keys[jt.queue]
        head: list[RedisArg] = [
            round(self._settings.idempotency_ttl * 1000), qs.priority_aging * 1000,
            jt.name, options, jt.schema_version,
        ]
        ids = [str(row[0]) for row in rows]

        def send(start: int) -> Deferred[Any]:
            chunk = rows[start:start + _BULK_CHUNK]
            every = _shared_priority(chunk)
            if every is None:
                args = [*head, ""]
                for row in chunk:
                    args += row
            else:  # short rows: id and data only (see enqueue.lua)
                args = [*head, every]
                for row in chunk:
                    args += row[:2]
            return self._scripts.enqueue([keys.base], args)

        if len(rows) <= _BULK_CHUNK:
            replies = [await send(0)]
        else:
            # A few chunks in flight at once: the round trips overlap, Redis stays shared.
            limit = defer.DeferredSemaphore(_CHUNKS_IN_FLIGHT)
            replies = await defer.gatherResults(
                [limit.run(send, start) for start in range(0, len(rows), _BULK_CHUNK)],
                consumeErrors=True,
            ).addErrback(_unwrap_first_error)
        duplicates = 0
        existing: set[str] = set()
        for chunk_index, dups in enumerate(replies):
            for n in range(0, len(dups), 2):
                ids[chunk_index * _BULK_CHUNK + int(dups[n]) - 1] = dups[n + 1]
                existing.add(dups[n + 1])
                duplicates += 1
        new = len(ids) - duplicates
        if new:
            metrics.ENQUEUED.labels(jt.queue, jt.name).inc(new)
            self._status.changed(jt.queue)
            if self._settings.job_events:
                topic = job_topic(jt.queue)
                for job_id in ids:
                    if job_id not in existing:
                        self._publisher.publish(
                            topic, {"jobId": job_id, "type": jt.name, "state": "queued"}
                        )
        if duplicates:
            metrics.DUPLICATES.labels(jt.queue).inc(duplicates)
        return ids


def _shared_priority(rows: list[Row]) -> RedisArg | None:
    """The priority of every row, when no row has a delay or a key and all have that
    priority (the script then takes short rows); None otherwise."""
    if not rows:
        return None
    every = rows[0][2]
    for row in rows:
        if row[2] != every or row[3] or row[4] or row[5]:
            return None
    return every


def _unwrap_first_error(failure: Any) -> Any:
    """gatherResults wraps errors in FirstError; callers want the error itself."""
    if isinstance(failure.value, defer.FirstError):
        return failure.value.subFailure
    return failure
