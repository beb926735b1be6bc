"""Realtime fixtures: a Redis client on the private redis-server, and realtime services
listening on real sockets through the real HTTP site (``/ws`` mounted)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from installsure.realtime.service import RealtimeService
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess
from tests.realtime.helpers import realtime_service, site_for


@pytest.fixture
def make_redis(redis_server: RedisServerProcess) -> Iterator[Callable[[], RedisService]]:
    """Started RedisServices on the test's private redis-server, stopped afterwards."""
    made: list[RedisService] = []

    def make() -> RedisService:
        service = RedisService(RedisTarget.from_url(redis_server.url), command_timeout=1.0,
                               connect_timeout=1.0)
        service.startService()
        made.append(service)
        pytest_twisted.blockon(service.when_connected(5))
        return service

    yield make
    for service in made:
        pytest_twisted.blockon(service.stopService())


Node = tuple[RealtimeService, int]


@pytest.fixture
def make_node(make_redis: Callable[[], RedisService]) -> Iterator[Callable[..., Node]]:
    """A realtime service (its own Redis client, as another process would have) served
    by the HTTP site on a free port; ``(service, port)``. Everything stops afterwards."""
    started: list[tuple[RealtimeService, Any]] = []

    def make(*, wire: str = "fast", ready: bool = True, **kw: Any) -> Node:
        service = realtime_service(make_redis(), **kw)
        service.startService()
        if ready:
            pytest_twisted.blockon(service.backplane.ready)
        port = reactor.listenTCP(0, site_for(service, wire), interface="127.0.0.1")  # type: ignore[attr-defined]
        started.append((service, port))
        return service, port.getHost().port

    yield make
    for service, port in reversed(started):
        pytest_twisted.blockon(port.stopListening())
        pytest_twisted.blockon(service.stopService())


@pytest.fixture
def node(make_node: Callable[..., Node]) -> Node:
    """One realtime node on the fast HTTP wire."""
    return make_node()


@pytest.fixture
def wire_node(make_node: Callable[..., Node], wire: str) -> Node:
    """One realtime node on each HTTP wire in turn."""
    return make_node(wire=wire)
