"""Drain of HTTP listeners: no new connections, in-flight requests finish, stragglers abort."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import pytest_twisted
import treq
from attrs import define
from twisted.internet import defer, reactor, threads
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
    ended = yield drained
    assert ended == {"requests_cut": 0, "connections_aborted": 0}
    assert time.monotonic() - started < 3.0, "the drain waited for the request, not the grace"
    yield listeners.stopService()


@pytest_twisted.inlineCallbacks
def test_drain_answers_requests_that_outlive_the_grace_with_503(wire):
    """A request still running when the grace period ends is answered 503 in the error
    envelope, and the drain ends right after (on each HTTP wire)."""
    listeners, resource, port = start_listeners(delay=30.0, wire=wire)
    response_d = treq.get(f"http://127.0.0.1:{port}/slow")
    while resource.started == 0:
        yield deferLater(reactor, 0.01, lambda: None)
    started = time.monotonic()
    ended = yield listeners.drain(grace=0.3)
    assert time.monotonic() - started < 2.0
    assert ended["requests_cut"] == 1
    response = yield response_d
    assert response.code == 503
    assert (yield response.json())["code"] == "UNAVAILABLE"
    yield listeners.stopService()


@pytest_twisted.inlineCallbacks
def test_connections_accepted_by_the_kernel_before_the_close_are_served():
    """Connections that completed their handshake (waiting in the listen backlog) when
    the listener closes are accepted and answered, not reset: close_listeners accepts
    them first."""
    listeners, _resource, port = start_listeners(delay=0.0, wire="fast")
    waiting = []
    for _ in range(5):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        waiting.append(s)
    # The handshakes complete in the kernel; nothing lets the reactor accept them
    # before the listener closes.
    time.sleep(0.1)
    listeners.close_listeners()
    listeners.drain_connections()
    answers = []
    for s in waiting:
        s.setblocking(True)
        s.settimeout(5)
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    for s in waiting:
        answers.append((yield threads.deferToThread(s.recv, 4096)))
        s.close()
    assert all(a.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in a for a in answers)
    yield listeners.stopService()


@pytest_twisted.inlineCallbacks
def test_drain_service_runs_hooks_and_reports_draining():
    """Stopping the drain service flips is_draining first and runs hooks with the grace
    left; a failing hook is logged and does not stop the drain."""
    drain = DrainService(grace=7.0)
    seen: list[tuple[bool, float]] = []

    def hook(grace: float) -> defer.Deferred[None]:
        seen.append((drain.is_draining(), round(grace)))
        return deferLater(reactor, 0.01, lambda: None)

    def broken(_grace: float) -> None:
        raise RuntimeError("hook failed")

    drain.add_hook("ok", hook)
    drain.add_hook("broken", broken)
    drain.startService()
    assert not drain.is_draining()
    yield drain.stopService()
    assert seen == [(True, 7)]
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
