"""Drain of HTTP listeners: no new connections, in-flight requests finish, stragglers abort."""

from __future__ import annotations

import socket
import time

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from installsure.drain import DrainService
from installsure.listeners import HttpListeners


class SlowResource(Resource):
    """Answers after ``delay`` seconds; counts requests that started."""

    isLeaf = True

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.started = 0

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        self.started += 1
        call = reactor.callLater(self.delay, self._finish, request)
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
        return NOT_DONE_YET

    @staticmethod
    def _finish(request) -> None:  # type: ignore[no-untyped-def]
        request.write(b"done")
        request.finish()


def start_listeners(delay: float) -> tuple[HttpListeners, SlowResource, int]:
    resource = SlowResource(delay)
    listeners = HttpListeners(reactor, ("tcp:0:interface=127.0.0.1",), Site(resource))
    listeners.privilegedStartService()
    listeners.startService()
    port = listeners.ports[0].getHost().port
    return listeners, resource, port


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest_twisted.inlineCallbacks
def test_drain_lets_in_flight_requests_finish():
    """A request in progress when the drain starts completes; new connections are refused."""
    listeners, resource, port = start_listeners(delay=0.5)
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
def test_drain_aborts_requests_that_outlive_the_grace():
    """A request still running when the grace period ends has its connection aborted."""
    listeners, resource, port = start_listeners(delay=30.0)
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
