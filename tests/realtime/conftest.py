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
        # Not waited for: commands issued while it connects wait for the connection, so
        # this may be called from inside a running test too.
        service = RedisService(RedisTarget.from_url(redis_server.url), command_timeout=1.0,
                               connect_timeout=1.0)
        service.startService()
        made.append(service)
        return service

    yield make
    for service in made:
        pytest_twisted.blockon(service.stopService())


Node = tuple[RealtimeService, int]


@pytest.fixture
def make_node(make_redis: Callable[[], RedisService]) -> Iterator[Callable[..., Node]]:
    """A realtime service (its own Redis client, as another process would have) served
    by the HTTP site on a free port; ``(service, port)``. Everything stops afterwards.
    Called inside a test, ``await service.backplane.ready`` before relying on Redis."""
    started: list[tuple[RealtimeService, Any]] = []

    def make(*, wire: str = "fast", **kw: Any) -> Node:
        service = realtime_service(make_redis(), **kw)
        service.startService()
        port = reactor.listenTCP(0, site_for(service, wire), interface="127.0.0.1")  # type: ignore[attr-defined]
        started.append((service, port))
        return service, port.getHost().port

    yield make
    for service, port in reversed(started):
        pytest_twisted.blockon(port.stopListening())
        pytest_twisted.blockon(service.stopService())


@pytest.fixture
def node(make_node: Callable[..., Node]) -> Node:
    """One realtime node on the fast HTTP wire, its backplane subscribed."""
    made = make_node()
    pytest_twisted.blockon(made[0].backplane.ready)
    return made


@pytest.fixture
def wire_node(make_node: Callable[..., Node], wire: str) -> Node:
    """One realtime node on each HTTP wire in turn."""
    made = make_node(wire=wire)
    pytest_twisted.blockon(made[0].backplane.ready)
    return made
