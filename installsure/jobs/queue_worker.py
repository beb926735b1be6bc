"""One queue's worker: the claim loop, the runner, the result flusher, the heartbeat
and the sweeper of that queue, started together and drained together.

On stop it claims no more, lets running jobs finish within ``grace``, reports their
results, and puts the rest back at the head of the queue without spending an attempt.
"""

from __future__ import annotations

import json

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.jobs import metrics
from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.claiming import ClaimLoop
from installsure.jobs.events import QueueJobEvents
from installsure.jobs.leases import Heartbeat, Sweeper
from installsure.jobs.lost import LostLeases
from installsure.jobs.outage import Outage, OutageLog
from installsure.jobs.queue import JobQueue
from installsure.jobs.results import ResultFlusher
from installsure.jobs.running import JobRunner, Running
from installsure.jobs.wire import ClaimDecoder, ClaimedJob, JobOptions

log = Logger(namespace="installsure.jobs.worker")

# The least a drain gives the result flusher, even with a shorter grace.
_LEAST_FLUSH_TIME = 5.0


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
        outage: OutageLog | None = None,
    ) -> None:
        self.name = name
        self.worker_id = worker_id
        self._reactor = reactor
        settings = queue.settings
        qs = settings.queue(name)
        keys = queue.keys(name)
        outage = outage or OutageLog()
        self._outage_log = outage
        events = QueueJobEvents(queue.publisher, name, settings.job_events)
        counters = metrics.QueueCounters(name)
        self._lost = LostLeases(name)
        self._scripts = queue.scripts
        self._keys = keys
        self._events = events
        self._results = ResultFlusher(
            name, worker_id, scripts=queue.scripts, keys=keys, settings=qs,
            flush_interval=settings.flush_interval,
            answer_ttl=settings.outage_grace + settings.lease_ttl, reactor=reactor,
            outage=Outage(f"reporting results of {name}", outage), events=events,
            counters=counters, status_changed=queue.status.changed, lost=self._lost,
            on_reported=self._slot_freed,
        )
        self._runner = JobRunner(
            name, worker_id, registry=queue.registry, redis=queue.redis,
            scripts=queue.scripts, keys=keys, idempotency_ttl=settings.idempotency_ttl,
            reactor=reactor, results=self._results, events=events, counters=counters,
            on_slot_freed=self._slot_freed, on_lease_lost=self._leases_lost,
        )
        # Options a job's stored ones cannot be read into: one attempt, the queue's timeout.
        fallback = JobOptions(attempts=1, backoff=BackoffPolicy(), timeout=qs.timeout)
        self._claims = ClaimLoop(
            name, worker_id, concurrency=concurrency or qs.concurrency,
            scripts=queue.scripts, keys=keys, settings=settings, queue_settings=qs,
            decoder=ClaimDecoder(fallback), reactor=reactor,
            outage=Outage(f"claiming from {name}", outage),
            connect_blocking=queue.redis.blocking_connection,
            running=lambda: self._runner.count, reporting=lambda: self._results.pending,
            hurry=self._results.flush_now, start_jobs=self._runner.run_claimed,
        )
        self._heartbeat = Heartbeat(
            name, worker_id, redis=queue.redis, scripts=queue.scripts, keys=keys,
            settings=settings, reactor=reactor, outage=Outage(f"heartbeat of {name}", outage),
            held=self._held, leases_lost=self._leases_lost,
        )
        self._sweeper = Sweeper(
            name, scripts=queue.scripts, keys=keys, settings=settings, queue_settings=qs,
            reactor=reactor, outage=Outage(f"sweeping {name}", outage), events=events,
            status_changed=queue.status.changed,
        )

    @property
    def concurrency(self) -> int:
        return self._claims.concurrency

    def start(self) -> None:
        # Redis is back: renew every lease held before anything else may sweep them.
        self._outage_log.on_back.append(self._heartbeat.beat_now)
        self._heartbeat.start()
        self._sweeper.start()
        self._claims.start()

    async def stop(self, grace: float) -> None:
        """Stop claiming; wait up to ``grace`` s for running jobs; give back the rest."""
        await self._claims.stop()
        await self._runner.wait_idle(grace)
        await self._results.flush_all(
            deadline=self._reactor.seconds() + max(grace, _LEAST_FLUSH_TIME)
        )
        unfinished = self._runner.give_back()
        if unfinished:
            await self._release(unfinished)
        self._sweeper.stop()
        self._heartbeat.stop()
        if self._heartbeat.beat_now in self._outage_log.on_back:
            self._outage_log.on_back.remove(self._heartbeat.beat_now)
        await self._claims.close()
        await self._heartbeat.withdraw()

    def _slot_freed(self) -> None:
        self._claims.slot_freed()

    def _leases_lost(self, tokens: list[str]) -> None:
        """Leases Redis no longer has for this worker: a processor still running is
        cancelled, a result not reported yet is dropped; each is logged and counted
        once (a refused report of one may tell again: LostLeases ignores that)."""
        for token in tokens:
            job = self._runner.lose(token)
            if job is not None:
                self._lost.lost(job, "its processor here is cancelled")
                continue
            job = self._results.forget(token)
            if job is not None:
                self._lost.lost(job, "its result here is not reported")

    def _held(self) -> list[ClaimedJob]:
        return self._runner.jobs() + self._results.held()

    async def _release(self, unfinished: list[Running]) -> None:
        held: list[str] = []
        for running in unfinished:
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
            self._runner.drop(running)
            job = running.job
            self._events.announce(
                {"jobId": job.id, "type": job.type, "state": "waiting", "released": True}
            )
