"""A started RedisService on the test's private redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import pytest_twisted

from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess

MakeService = Callable[..., RedisService]


@pytest.fixture
def make_service(redis_server: RedisServerProcess) -> Iterator[MakeService]:
    """Build and start RedisServices on the private server; all are stopped afterwards."""
    services: list[RedisService] = []

    def make(target: RedisTarget | None = None, **options: object) -> RedisService:
        service = RedisService(target or RedisTarget.from_url(redis_server.url), **options)  # type: ignore[arg-type]
        service.startService()
        services.append(service)
        return service

    yield make
    for service in services:
        pytest_twisted.blockon(service.stopService())


@pytest.fixture
def redis(make_service: MakeService) -> RedisService:
    """A started service with a 1 s command timeout, connected before the test runs."""
    service = make_service(command_timeout=1.0)
    pytest_twisted.blockon(service.when_connected(5))
    return service
