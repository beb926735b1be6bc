"""Queue administration: the status for managers and admins, the rest for admins."""

import uuid

from tests.authz.matrix import Entry, statuses

QUEUE = {"queue": "email-send"}


def admins(status: int) -> dict[str, dict[str, int]]:
    """Admin-only: admins and the operator get ``status``, other users 403."""
    return {"-": statuses(403, admin=status, operator=status)}


def _job(_situation: object) -> dict[str, str]:
    return {**QUEUE, "id": str(uuid.uuid4())}


ENTRIES = [
    Entry("GET", "/api/queue/status", {"-": statuses(403, manager=200, admin=200,
                                                    operator=200)}),
    Entry("GET", "/api/queue/{queue}/jobs", admins(200), params=lambda _s: QUEUE),
    # No such job: admins learn that (404), others are refused before (403).
    Entry("GET", "/api/queue/{queue}/jobs/{id}", admins(404), params=_job),
    Entry("POST", "/api/queue/{queue}/jobs/{id}/retry", admins(404), params=_job),
    Entry("DELETE", "/api/queue/{queue}/jobs/{id}", admins(404), params=_job),
    Entry("POST", "/api/queue/{queue}/pause", admins(200), params=lambda _s: QUEUE),
    Entry("POST", "/api/queue/{queue}/resume", admins(200), params=lambda _s: QUEUE),
    Entry("POST", "/api/queue/{queue}/dead/retry-all", admins(200), params=lambda _s: QUEUE),
    Entry("POST", "/api/queue/{queue}/purge", admins(200), params=lambda _s: QUEUE,
          body=lambda _s: {"state": "completed"}),
]
