"""What becomes of a job attempt that failed: retried after its backoff, retried later
without spending an attempt (``RetryLater``), or dead."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from attrs import frozen
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.jobs import metrics
from installsure.jobs.errors import PermanentError, RetryLater
from installsure.jobs.wire import ClaimedJob

log = Logger(namespace="installsure.jobs.worker")

_MESSAGE_LIMIT = 2000

_STATE_AFTER = {"retry": "failed", "later": "delayed", "dead": "dead"}


@frozen
class FailedAttempt:
    """One failed attempt, as the ``fail`` script takes it."""

    job: ClaimedJob
    action: str  # "retry" | "later" | "dead"
    delay: float  # seconds until the next attempt
    message: str
    record: dict[str, Any]  # kept in the job's error history

    @property
    def state(self) -> str:
        """The job's state once Redis accepted this attempt."""
        return _STATE_AFTER[self.action]

    def script_row(self) -> list[object]:
        return [self.job.id, self.job.token, self.action, round(self.delay * 1000), self.record]


def judge_failure(
    job: ClaimedJob, failure: Failure, *, timed_out: bool, queue: str, worker_id: str
) -> FailedAttempt:
    """Decide what ``failure`` means for ``job``; logs it and counts it."""
    error = failure.value
    failures = job.attempts_made + 1
    if timed_out and isinstance(error, CancelledError):
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
        metrics.FAILED.labels(queue, job.type).inc()
        log.warn(
            "job {job_id} ({job_type}) of {queue} failed on attempt {attempt} of "
            "{max_attempts}: {error}; {outcome}",
            job_id=job.id, job_type=job.type, queue=queue, attempt=failures,
            max_attempts=job.max_attempts, error=message,
            outcome="dead" if action == "dead" else f"retry in {delay:.3g} s",
        )
        if kind == "error" and not isinstance(error, Exception | CancelledError):
            log.failure("unexpected failure of job {job_id}", failure, job_id=job.id)
    if action == "dead":
        metrics.DEAD.labels(queue, job.type).inc()
    else:
        metrics.RETRIED.labels(queue, job.type).inc()
    record = {
        "message": message[:_MESSAGE_LIMIT], "kind": kind, "attempt": failures,
        "worker": worker_id, "at": _iso_now(),
    }
    return FailedAttempt(job, action, delay, message, record)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
