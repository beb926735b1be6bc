"""Queue administration (API.md "Health and operations"): status, jobs, retry, pause.

A thin layer over :class:`installsure.jobs.admin.QueueAdmin`: it declares the routes,
their auth requirement (``manager`` may read the status, everything else is ``admin``)
and turns job-runner errors into the API's error envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from attrs import field, frozen, validators
from twisted.internet.defer import Deferred

from installsure.http.context import RequestContext
from installsure.http.errors import ApiError
from installsure.http.routing import Paged, Router
from installsure.jobs.admin import QueueAdmin
from installsure.jobs.errors import (
    InvalidOption,
    InvalidPayload,
    InvalidState,
    JobNotFound,
    JobsError,
    JobStateConflict,
    UnknownQueue,
)
from installsure.redis.interfaces import RedisUnavailable

T = TypeVar("T")

JobState = Literal["waiting", "active", "delayed", "failed", "dead", "completed"]
PurgeableState = Literal["waiting", "delayed", "failed", "dead", "completed"]

TAGS = ("queue",)


MAX_PER_PAGE = 100
#: Far past any retained job; keeps the offset a Redis integer (2^63 overflowed it).
MAX_PAGE = 1_000_000


@frozen
class JobsQuery:
    state: JobState = "waiting"
    page: int = field(default=1, validator=[validators.ge(1), validators.le(MAX_PAGE)])
    per_page: int = field(default=20, validator=[validators.ge(1),
                                                 validators.le(MAX_PER_PAGE)])


@frozen
class PurgeRequest:
    state: PurgeableState


async def _admin_call(call: Deferred[T] | Awaitable[T]) -> T:
    """Await a QueueAdmin call, answering its errors in the API's envelope."""
    try:
        return await call
    except (UnknownQueue, JobNotFound) as error:
        raise ApiError("NOT_FOUND", str(error)) from None
    except JobStateConflict as error:
        raise ApiError("CONFLICT", str(error)) from None
    except (InvalidState, InvalidOption, InvalidPayload) as error:
        raise ApiError("BAD_REQUEST", str(error)) from None
    except JobsError as error:
        raise ApiError("BAD_REQUEST", str(error)) from None
    except RedisUnavailable:
        raise ApiError(
            "UNAVAILABLE", "The job queues are unavailable (Redis does not answer); try again.",
            headers=((b"Retry-After", b"5"),),
        ) from None


def queue_router(admin: QueueAdmin) -> Router:
    """The routes of ``/api/queue``."""
    router = Router()

    @router.route("GET", "/api/queue/status", auth="manager", tags=TAGS, errors=(503,),
                  summary="Counts, paused flag, workers and throughput of every queue")
    async def status(_ctx: RequestContext) -> dict[str, Any]:
        return await _admin_call(admin.status())

    @router.route("GET", "/api/queue/{queue}/jobs", query=JobsQuery, auth="admin", tags=TAGS,
                  errors=(404, 503), summary="Jobs of one queue in one state, newest first")
    async def list_jobs(_ctx: RequestContext, queue: str, query: JobsQuery) -> Paged[Any]:
        result = await _admin_call(
            admin.list_jobs(queue, query.state, query.page, query.per_page))
        meta = result["meta"]
        return Paged(result["jobs"], meta["page"], meta["perPage"], meta["total"])

    @router.route("GET", "/api/queue/{queue}/jobs/{id}", auth="admin", tags=TAGS,
                  errors=(404, 503), summary="One job with its payload, attempts and errors")
    async def get_job(_ctx: RequestContext, queue: str, id: str) -> dict[str, Any]:
        return await _admin_call(admin.get_job(queue, id))

    @router.route("POST", "/api/queue/{queue}/jobs/{id}/retry", auth="admin", tags=TAGS,
                  errors=(404, 409, 503), summary="Run a failed or dead job again now")
    async def retry(_ctx: RequestContext, queue: str, id: str) -> dict[str, Any]:
        return await _admin_call(admin.retry(queue, id))

    @router.route("DELETE", "/api/queue/{queue}/jobs/{id}", auth="admin", tags=TAGS,
                  errors=(404, 409, 503), summary="Remove a job that is not running")
    async def remove(_ctx: RequestContext, queue: str, id: str) -> dict[str, Any]:
        return await _admin_call(admin.remove(queue, id))

    @router.route("POST", "/api/queue/{queue}/pause", auth="admin", tags=TAGS,
                  errors=(404, 503), summary="Stop workers from taking jobs of this queue")
    async def pause(_ctx: RequestContext, queue: str) -> dict[str, Any]:
        return await _admin_call(admin.pause(queue))

    @router.route("POST", "/api/queue/{queue}/resume", auth="admin", tags=TAGS,
                  errors=(404, 503), summary="Let workers take jobs of this queue again")
    async def resume(_ctx: RequestContext, queue: str) -> dict[str, Any]:
        return await _admin_call(admin.resume(queue))

    @router.route("POST", "/api/queue/{queue}/dead/retry-all", auth="admin", tags=TAGS,
                  errors=(404, 503), summary="Move every dead job back to waiting")
    async def retry_all_dead(_ctx: RequestContext, queue: str) -> dict[str, Any]:
        return await _admin_call(admin.retry_all_dead(queue))

    @router.route("POST", "/api/queue/{queue}/purge", body=PurgeRequest, auth="admin",
                  tags=TAGS, errors=(404, 503), summary="Delete every job in one state")
    async def purge(_ctx: RequestContext, queue: str, body: PurgeRequest) -> dict[str, Any]:
        return await _admin_call(admin.purge(queue, body.state))

    return router
