"""Queue administration for the HTTP API, free of any web framework.

Every method returns a Deferred of a JSON-ready dict (API.md field names). Errors are
``JobsError`` subclasses the routes map to statuses: UnknownQueue and JobNotFound → 404,
JobStateConflict → 409, InvalidState and InvalidOption → 400.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from installsure.jobs.model import JobRecord, QueueCounts
from installsure.jobs.queue import JobQueue


class QueueAdmin:
    """What ``/api/queue/...`` does, over a JobQueue."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def status(self) -> Deferred[dict[str, Any]]:
        """Counts, paused flag, workers and throughput of every queue."""

        async def collect() -> dict[str, Any]:
            counts: list[QueueCounts] = await defer.gatherResults(
                [self.queue.stats(name) for name in self.queue.queues], consumeErrors=True
            ).addErrback(_first_error)
            return {"queues": {c.queue: c.to_json() for c in counts}}

        return defer.ensureDeferred(collect())

    def queue_status(self, queue: str) -> Deferred[dict[str, Any]]:
        return self.queue.stats(queue).addCallback(QueueCounts.to_json)

    def list_jobs(
        self, queue: str, state: str, page: int = 1, per_page: int = 20
    ) -> Deferred[dict[str, Any]]:
        """``{"jobs": [...], "meta": {"page", "perPage", "total"}}``."""

        def shape(result: tuple[list[JobRecord], int]) -> dict[str, Any]:
            jobs, total = result
            return {
                "jobs": [job.to_json() for job in jobs],
                "meta": {"page": page, "perPage": per_page, "total": total},
            }

        return self.queue.list(queue, state, page, per_page).addCallback(shape)

    def get_job(self, queue: str, job_id: str) -> Deferred[dict[str, Any]]:
        return self.queue.get(queue, job_id).addCallback(JobRecord.to_json)

    def retry(self, queue: str, job_id: str) -> Deferred[dict[str, Any]]:
        d = self.queue.retry(queue, job_id)
        return d.addCallback(lambda _: {"id": job_id, "queue": queue, "state": "waiting"})

    def remove(self, queue: str, job_id: str) -> Deferred[dict[str, Any]]:
        d = self.queue.remove(queue, job_id)
        return d.addCallback(lambda _: {"id": job_id, "queue": queue, "removed": True})

    def pause(self, queue: str) -> Deferred[dict[str, Any]]:
        return self.queue.pause(queue).addCallback(lambda _: {"queue": queue, "isPaused": True})

    def resume(self, queue: str) -> Deferred[dict[str, Any]]:
        d = self.queue.resume(queue)
        return d.addCallback(lambda _: {"queue": queue, "isPaused": False})

    def retry_all_dead(self, queue: str) -> Deferred[dict[str, Any]]:
        d = self.queue.retry_dead_all(queue)
        return d.addCallback(lambda n: {"queue": queue, "retried": n})

    def purge(self, queue: str, state: str) -> Deferred[dict[str, Any]]:
        d = self.queue.purge(queue, state)
        return d.addCallback(lambda n: {"queue": queue, "state": state, "removed": n})


def _first_error(failure: Any) -> Any:
    """gatherResults wraps errors in FirstError; callers want the JobsError itself."""
    if isinstance(failure.value, defer.FirstError):
        return failure.value.subFailure
    return failure
