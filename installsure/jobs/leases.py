"""Leases: the heartbeat that keeps this worker's, and the sweeper that ends others'.

Every ``heartbeat_interval`` a worker renews its liveness key and the leases of every job
it holds (running, or finished with the result not yet accepted), and at once when Redis
can be reached again after an outage. Every ``sweeper_interval`` it sweeps the queue for
leases that lapsed, jobs of workers that died; every node does this, and the script
makes it safe.

A lease also lapses while Redis is away, though its worker lives. So the first
heartbeat and the first sweep of a worker after it could not reach Redis say so, and
the scripts then count no stall for a lease's time (``stall_hold_ms``); the sweep script
also takes a Redis it did not see before (restart, failover) for an outage.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.jobs import metrics
from installsure.jobs.events import QueueJobEvents
from installsure.jobs.keys import QueueKeys
from installsure.jobs.outage import Outage
from installsure.jobs.results import FLUSH_CHUNK
from installsure.jobs.scripts import Scripts
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.wire import ClaimedJob
from installsure.redis.interfaces import LONGEST_RECONNECT_DELAY, RedisArg, RedisCommands

log = Logger(namespace="installsure.jobs.worker")


def stall_hold_ms(settings: JobsSettings) -> int:
    """How long after an outage no stall is counted: a full lease from the moment the
    last live worker could be back (processes reconnect within
    LONGEST_RECONNECT_DELAY of Redis listening again), so each can renew first."""
    return round((settings.lease_ttl + LONGEST_RECONNECT_DELAY) * 1000)


class Heartbeat:
    """Keeps one worker alive on one queue and renews the leases of ``held()``; hands
    the tokens of leases Redis no longer has for it to ``leases_lost``."""

    def __init__(
        self,
        queue: str,
        worker_id: str,
        *,
        redis: RedisCommands,
        scripts: Scripts,
        keys: QueueKeys,
        settings: JobsSettings,
        reactor: IReactorTime,
        outage: Outage,
        held: Callable[[], list[ClaimedJob]],
        leases_lost: Callable[[list[str]], None],
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._redis = redis
        self._scripts = scripts
        self._keys = keys
        self._settings = settings
        self._outage = outage
        self._held = held
        self._leases_lost = leases_lost
        self._beating = False
        self._told = 0  # outages of the OutageLog this heartbeat has told Redis of
        self._loop = task.LoopingCall(self._beat)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(self._settings.heartbeat_interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    async def withdraw(self) -> None:
        """Say this worker is gone (else its liveness key expires by itself)."""
        try:
            await self._redis.execute("DEL", f"{self._keys.base}:alive:{self._worker_id}")
            await self._redis.execute("ZREM", f"{self._keys.base}:workers", self._worker_id)
        except Exception as e:  # the liveness key expires by itself
            log.debug("could not withdraw worker {worker_id}: {error}",
                      worker_id=self._worker_id, error=e)

    def beat_now(self) -> None:
        """Renew at once (Redis is back), unless a beat is on its way already."""
        if self._loop.running and not self._beating:
            self._beat()

    def _beat(self) -> Deferred[None] | None:
        if self._beating:
            return None  # the one in flight renews; the loop waits for the next turn
        return Deferred.fromCoroutine(self._beat_guarded())

    async def _beat_guarded(self) -> None:
        self._beating = True
        try:
            await self._beat_once()
        finally:
            self._beating = False

    async def _beat_once(self) -> None:
        held = self._held()
        outages = self._outage.log.outages
        head: list[RedisArg] = [
            self._worker_id,
            round(self._settings.lease_ttl * 1000),
            round(self._settings.liveness_ttl * 1000),
        ]
        tail: list[RedisArg] = [
            "1" if outages > self._told else "0", stall_hold_ms(self._settings),
        ]
        try:
            lost: list[str] = []
            for start in range(0, max(1, len(held)), FLUSH_CHUNK):
                pairs = [x for job in held[start:start + FLUSH_CHUNK] for x in (job.id, job.token)]
                lost += await self._scripts.heartbeat(
                    [self._keys.base], [*head, json.dumps(pairs), *tail]
                )
        except Exception as e:  # leases lapse only after lease_ttl: next beat may do
            self._outage.failed(e)
            return
        self._told = outages
        self._outage.succeeded()
        if lost:
            self._leases_lost(list(lost))


class Sweeper:
    """Returns the jobs of dead workers of one queue to waiting (or to dead after
    ``max_stalls``), applies retention and promotes due jobs."""

    def __init__(
        self,
        queue: str,
        *,
        scripts: Scripts,
        keys: QueueKeys,
        settings: JobsSettings,
        queue_settings: QueueSettings,
        reactor: IReactorTime,
        outage: Outage,
        events: QueueJobEvents,
        status_changed: Callable[[str], None],
    ) -> None:
        self._queue = queue
        self._scripts = scripts
        self._keys = keys
        self._settings = settings
        self._qs = queue_settings
        self._outage = outage
        self._events = events
        self._status_changed = status_changed
        self._told = 0  # outages of the OutageLog this sweeper has told Redis of
        self._loop = task.LoopingCall(self._sweep)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(self._settings.sweeper_interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _sweep(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._sweep_once())

    async def _sweep_once(self) -> None:
        qs = self._qs
        outages = self._outage.log.outages
        try:
            stalled, dead, promoted, _held_for = await self._scripts.sweep(
                [self._keys.base],
                [
                    qs.max_stalls, qs.priority_aging * 1000,
                    round(self._settings.liveness_ttl * 1000),
                    qs.keep_dead_count, round(qs.keep_dead_age * 1000),
                    qs.keep_completed_count, round(qs.keep_completed_age * 1000),
                    stall_hold_ms(self._settings), "1" if outages > self._told else "0",
                ],
            )
        except Exception as e:  # any node may sweep; the next run catches up
            self._outage.failed(e)
            return
        self._told = outages
        self._outage.succeeded()
        if stalled or dead:
            log.warn(
                "{count} jobs of {queue} stalled (their worker stopped renewing leases): "
                "{requeued} back to waiting, {dead} dead after too many stalls",
                count=len(stalled) + len(dead), queue=self._queue,
                requeued=len(stalled), dead=len(dead),
            )
            metrics.STALLED.labels(self._queue).inc(len(stalled) + len(dead))
            for job_id in stalled:
                self._events.announce({"jobId": job_id, "state": "waiting", "stalled": True})
            for job_id in dead:
                self._events.announce({"jobId": job_id, "state": "dead", "stalled": True})
        if stalled or dead or promoted:
            self._status_changed(self._queue)
