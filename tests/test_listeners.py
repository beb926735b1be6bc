"""Drain of HTTP listeners: no new connections, in-flight requests finish, stragglers abort."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import pytest_twisted
import treq
from attrs import define
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from installsure.drain import DrainService
from installsure.http import HttpSettings, Response, Router, build_site
from installsure.http.site import ApiSite
from installsure.listeners import HttpListeners, with_backlog


@define
class SlowApi:
    """An API site whose ``GET /slow`` answers after ``delay`` seconds; counts the
    requests that started."""

    delay: float
    wire: str
    started: int = 0

    def site(self) -> ApiSite:
        router = Router()

        @router.route("GET", "/slow", rate_limit=None)
        async def slow(_ctx: Any) -> Response:
            self.started += 1
            await deferLater(reactor, self.delay, lambda: None)
            return Response(body=b"done", content_type=b"text/plain")

        return build_site(router, HttpSettings(wire=self.wire))


def start_listeners(delay: float, wire: str) -> tuple[HttpListeners, SlowApi, int]:
    api = SlowApi(delay, wire)
    listeners = HttpListeners(reactor, ("tcp:0:interface=127.0.0.1",), api.site())
    listeners.privilegedStartService()
    listeners.startService()
    port = listeners.ports[0].getHost().port
    return listeners, api, port


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest_twisted.inlineCallbacks
def test_drain_lets_in_flight_requests_finish(wire):
    """A request in progress when the drain starts completes; new connections are refused
    (on each HTTP wire)."""
    listeners, resource, port = start_listeners(delay=0.5, wire=wire)
    response_d = treq.get(f"http://127.0.0.1:{port}/slow")
    while resource.started == 0:
        yield deferLater(reactor, 0.01, lambda: None)
    started = time.monotonic()
    drained = listeners.drain(grace=5.0)
    yield deferLater(reactor, 0.05, lambda: None)
    assert refused(port)
    response = yield response_d
    assert response.code == 200
    assert (yield response.content()) == b"done"
    yield drained
    assert time.monotonic() - started < 3.0, "the drain waited for the request, not the grace"
    yield listeners.stopService()


@pytest_twisted.inlineCallbacks
def test_drain_aborts_requests_that_outlive_the_grace(wire):
    """A request still running when the grace period ends has its connection aborted
    (on each HTTP wire)."""
    listeners, resource, port = start_listeners(delay=30.0, wire=wire)
    response_d = treq.get(f"http://127.0.0.1:{port}/slow")
    while resource.started == 0:
        yield deferLater(reactor, 0.01, lambda: None)
    started = time.monotonic()
    yield listeners.drain(grace=0.3)
    assert time.monotonic() - started < 2.0
    with pytest.raises(Exception):
        yield response_d
    yield listeners.stopService()


@pytest_twisted.inlineCallbacks
def test_drain_service_runs_hooks_and_reports_draining():
    """Stopping the drain service flips is_draining first and runs hooks with the grace."""
    drain = DrainService(grace=7.0)
    seen: list[tuple[bool, float]] = []

    def hook(grace: float) -> defer.Deferred[None]:
        seen.append((drain.is_draining(), grace))
        return deferLater(reactor, 0.01, lambda: None)

    def broken(_grace: float) -> None:
        raise RuntimeError("hook failed")

    drain.add_hook("ok", hook)
    drain.add_hook("broken", broken)
    drain.startService()
    assert not drain.is_draining()
    yield drain.stopService()
    assert seen == [(True, 7.0)]
    assert drain.is_draining()


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:8000:interface=127.0.0.1", "tcp:8000:interface=127.0.0.1:backlog=1024"),
        ("tcp6:8000:interface=\\:\\:1", "tcp6:8000:interface=\\:\\:1:backlog=1024"),
        ("unix:/run/installsure.sock", "unix:/run/installsure.sock:backlog=1024"),
        ("ssl:443:privateKey=k.pem:backlog=64", "ssl:443:privateKey=k.pem:backlog=64"),
        ("tcp:8000:backlog=8:interface=127.0.0.1", "tcp:8000:backlog=8:interface=127.0.0.1"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_endpoints_get_the_backlog_unless_they_say_their_own(
    description: str, expected: str
) -> None:
    """tcp, tcp6, ssl and unix endpoints get http.backlog; one that names a backlog
    keeps it, and endpoint types that take none (an inherited systemd socket) are left
    alone."""
    assert with_backlog(description, 1024) == expected


@pytest_twisted.inlineCallbacks
def test_listening_sockets_are_opened_with_the_backlog():
    """The listening socket is opened with http.backlog (1024 unless set), or with the
    backlog its endpoint string names."""
    site = SlowApi(0.0, "fast").site()
    listeners = HttpListeners(
        reactor, ("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1:backlog=7"), site
    )
    listeners.startService()
    try:
        assert sorted(port.backlog for port in listeners.ports) == [7, 1024]
    finally:
        yield listeners.stopService()
