"""Leases this worker lost: each one is logged once and counted once.

A lease is lost when the job stalled (its lease lapsed and a sweep gave the job to
another worker) or was taken over. The heartbeat finds out, a refused report or a
refused progress write may find out too, and sometimes more than one of them about the
same lease; the first to tell decides, the others are ignored.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.logger import Logger

from installsure.jobs import metrics
from installsure.jobs.wire import ClaimedJob

log = Logger(namespace="installsure.jobs.worker")

_REMEMBERED = 10_000
"""Lost tokens remembered; a lease is told about within seconds, so few are needed."""


class LostLeases:
    """The lost leases of one queue's worker (module docstring)."""

    def __init__(self, queue: str) -> None:
        self._queue = queue
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._metric = metrics.LEASE_LOST.labels(queue)

    def lost(self, job: ClaimedJob, what: str) -> bool:
        """Note that the lease of ``job`` is lost; ``what`` says what became of the
        work done here. False when this lease was noted before."""
        if job.token in self._seen:
            return False
        self._seen[job.token] = None
        if len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
        self._metric.inc()
        log.warn(
            "lease of job {job_id} of {queue} lost (it stalled and runs or ran "
            "elsewhere); {what}", job_id=job.id, queue=self._queue, what=what,
        )
        return True
