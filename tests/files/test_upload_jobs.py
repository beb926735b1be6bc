"""With a real Redis: every upload queues a file-processing job per file, and uploads
are rate limited per user."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
import treq

from installsure.db import Database
from installsure.files.processing import FILE_PROCESSING, file_processing_job_type
from installsure.http import HttpSettings
from installsure.http.factory import rate_rules
from installsure.http.ratelimit import RateLimiter
from installsure.jobs import JobQueue, JobRegistry, JobsSettings, QueueSettings
from installsure.jobs.admin import QueueAdmin
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.files.helpers import CONTENT_TYPE, PDF, PNG, multipart
from tests.files.world import FilesWorld, serve_files
from tests.fixtures.redis import RedisServerProcess


@pytest.fixture
def redis(redis_server: RedisServerProcess) -> Iterator[RedisService]:
    service = RedisService(RedisTarget.from_url(redis_server.url), key_prefix="t:")
    service.startService()
    pytest_twisted.blockon(service.when_connected(5))
    yield service
    pytest_twisted.blockon(service.stopService())


@pytest.fixture
def queued_world(database: Database, tmp_path: Path,
                 redis: RedisService) -> Iterator[tuple[FilesWorld, JobQueue]]:
    """The files API with a job queue and a rate limit of 2 uploads a minute per user."""
    registry = JobRegistry()
    registry.register(file_processing_job_type())
    queue = JobQueue(redis, registry, JobsSettings(queues={FILE_PROCESSING: QueueSettings()}))
    http = HttpSettings(rate_limits={"upload": "2/60"})
    limiter = RateLimiter(redis, rate_rules(http))
    for world in serve_files(database, tmp_path, queue=queue, rate_limiter=limiter,
                             settings=http):
        yield world, queue


async def post(world: FilesWorld, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    response = await treq.post(world.base + "/api/files/upload", data=body,
                               headers={**headers, "Content-Type": CONTENT_TYPE},
                               persistent=False)
    answer = json.loads(await response.content())
    answer["_headers"] = {k.decode(): v for k, v in response.headers.getAllRawHeaders()}
    return response.code, answer


@pytest_twisted.ensureDeferred
async def test_each_uploaded_file_queues_a_processing_job(
    queued_world: tuple[FilesWorld, JobQueue],
) -> None:
    """After an upload of two files, the file-processing queue holds one job per file,
    whose payload names the file, its project, key, type, size and SHA-256."""
    world, queue = queued_world
    user = await world.user()
    project = await world.project({user["X-User"]: "editor"})
    code, answer = await post(world, user, multipart([
        ("projectId", None, project.encode()), ("file", "a.png", PNG),
        ("file", "b.pdf", PDF)]))
    assert code == 201, answer
    listed = await QueueAdmin(queue).list_jobs(FILE_PROCESSING, "waiting", 1, 10)
    payloads = sorted((job["payload"] for job in listed["jobs"]),
                      key=lambda p: p["extension"])
    records = sorted(answer["data"], key=lambda r: r["extension"])
    assert [(p["file_id"], p["project_id"], p["extension"], p["size"], p["sha256"])
            for p in payloads] == [
        (r["id"], project, r["extension"], r["size"], r["sha256"]) for r in records]
    assert {p["storage_key"] for p in payloads} == {f"{r['id'][:2]}/{r['id']}"
                                                    for r in records}


@pytest_twisted.ensureDeferred
async def test_uploads_are_rate_limited_per_user(
    queued_world: tuple[FilesWorld, JobQueue],
) -> None:
    """With http.rate_limits.upload = 2/60, a user's third upload in the window is 429
    RATE_LIMITED with Retry-After, and stores nothing; another user may still upload."""
    world, _queue = queued_world
    first = await world.user()
    second = await world.user()
    body = multipart([("file", "a.png", PNG)])
    for _ in range(2):
        code, answer = await post(world, first, body)
        assert code == 201, answer
    code, answer = await post(world, first, body)
    assert (code, answer["code"]) == (429, "RATE_LIMITED")
    assert "Retry-After" in answer["_headers"]
    assert len(await world.rows()) == 2
    code, answer = await post(world, second, body)
    assert code == 201, answer
