"""Prometheus metrics of the job runner, defined once for the process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

ENQUEUED = Counter("installsure_jobs_enqueued", "Jobs enqueued", ["queue", "type"])
DUPLICATES = Counter(
    "installsure_jobs_duplicates",
    "Enqueues answered with an existing job (unique or idempotency key)",
    ["queue"],
)
COMPLETED = Counter("installsure_jobs_completed", "Jobs completed", ["queue", "type"])
FAILED = Counter("installsure_jobs_failed", "Failed attempts", ["queue", "type"])
RETRIED = Counter(
    "installsure_jobs_retried", "Jobs scheduled for another run (backoff or RetryLater)",
    ["queue", "type"],
)
DEAD = Counter("installsure_jobs_dead", "Jobs moved to the dead-letter set", ["queue", "type"])
STALLED = Counter(
    "installsure_jobs_stalled", "Jobs whose worker stopped renewing their lease", ["queue"]
)
LEASE_LOST = Counter(
    "installsure_jobs_lease_lost",
    "Leases a worker lost while it held the job (once per lease: its processor is "
    "cancelled, its result not reported)",
    ["queue"],
)
TIMED_OUT = Counter("installsure_jobs_timed_out", "Jobs cancelled by their timeout", ["queue"])
RELEASED = Counter(
    "installsure_jobs_released", "Jobs put back unfinished by a draining worker", ["queue"]
)
WAIT_SECONDS = Histogram(
    "installsure_jobs_wait_seconds", "Time from ready to claimed", ["queue"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, float("inf")),
)
RUN_SECONDS = Histogram(
    "installsure_jobs_run_seconds", "Time a processor ran", ["queue", "type"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, float("inf")),
)
DEPTH = Gauge("installsure_jobs_depth", "Jobs per queue and state", ["queue", "state"])
IN_FLIGHT = Gauge("installsure_jobs_in_flight", "Jobs running in this process", ["queue"])


class QueueCounters:
    """The Prometheus children of one queue's hottest counters, looked up once per job
    type instead of once per job."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._completed: dict[str, Any] = {}
        self._run: dict[str, Any] = {}

    def ran(self, job_type: str, seconds: float) -> None:
        """Run time of a processor that succeeded (about half a microsecond each)."""
        h = self._run.get(job_type)
        if h is None:
            h = self._run[job_type] = RUN_SECONDS.labels(self.queue, job_type)
        h.observe(seconds)

    def completed(self, job_types: Iterable[str]) -> None:
        """One completion per item of ``job_types``."""
        counts: dict[str, int] = {}
        for job_type in job_types:
            counts[job_type] = counts.get(job_type, 0) + 1
        for job_type, n in counts.items():
            c = self._completed.get(job_type)
            if c is None:
                c = self._completed[job_type] = COMPLETED.labels(self.queue, job_type)
            c.inc(n)
