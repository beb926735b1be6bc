"""The queue admin routes over a real Redis: what they answer when Redis is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from installsure.api.queue import queue_router
from installsure.auth.operator import OperatorAuthenticator
from installsure.http import HttpSettings, build_site
from installsure.jobs.admin import QueueAdmin
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess

SECRET = "queue-api-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}


@pytest.fixture
def queue_api(redis_server: RedisServerProcess) -> Iterator[str]:
    """The queue routes served on a real socket over a real Redis; their base URL."""
    redis = RedisService(RedisTarget.from_url(redis_server.url), command_timeout=0.5,
                         key_prefix="t:")
    redis.startService()
    pytest_twisted.blockon(redis.when_connected(5))
    queue = JobQueue(redis, JobRegistry(), JobsSettings(queues={"email-send": QueueSettings()}))
    site = build_site(queue_router(QueueAdmin(queue)), HttpSettings(),
                      authenticate=OperatorAuthenticator(SECRET))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    yield f"http://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(port.stopListening())
    pytest_twisted.blockon(redis.stopService())


@pytest_twisted.ensureDeferred
async def test_queue_routes_answer_503_while_redis_is_down(
    queue_api: str, redis_server: RedisServerProcess,
) -> None:
    """With Redis stopped, the queue routes answer 503 UNAVAILABLE with Retry-After (as
    documented), not a 500."""
    before = await treq.get(queue_api + "/api/queue/status", headers=AUTH, persistent=False)
    assert before.code == 200
    await before.content()
    redis_server.stop()
    for path in ["/api/queue/status", "/api/queue/email-send/jobs?state=dead"]:
        response = await treq.get(queue_api + path, headers=AUTH, persistent=False)
        body = await response.json()
        assert response.code == 503, body
        assert body["code"] == "UNAVAILABLE"
        assert response.headers.getRawHeaders("Retry-After") == ["5"]
