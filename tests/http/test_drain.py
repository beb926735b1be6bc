"""Draining HTTP connections on shutdown, over real sockets, on each HTTP wire.

The listeners and their site are real (``HttpListeners`` on a loopback port); the
client is a raw socket, so the tests see exactly which responses say ``Connection:
close`` and when the server closes. Phases are driven as the drain service drives
them: ``stop_accepting`` and ``drain_connections`` together, then ``finish``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from attrs import define, field
from prometheus_client import REGISTRY
from twisted.internet import defer, reactor, threads
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from installsure.http import HttpSettings, Response, Router, build_site
from installsure.http.connections import QUIET_SECONDS, socket_has_bytes
from installsure.listeners import HttpListeners
from tests.http.helpers import captured_events
from tests.http.rawclient import RawClient


def open_connections() -> float | None:
    """installsure_http_connections_open as /metrics shows it."""
    return REGISTRY.get_sample_value("installsure_http_connections_open")


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class Echo(Protocol):
    """What a WebSocket upgrade hands the connection to, reduced to an echo."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class TakeOver(Resource):
    """Upgrades the connection as autobahn's WebSocketResource does: takes the transport
    from the HTTP channel (``request.channel.transport = None``) and connects its own
    protocol to it, through the wrapper when the transport is one."""

    isLeaf = True

    def render(self, request: Any) -> Any:
        transport, request.channel.transport = request.channel.transport, None
        protocol = Echo()
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                        b"Connection: Upgrade\r\n\r\n")
        return NOT_DONE_YET


@define
class Served:
    listeners: HttpListeners
    port: int
    #: Handlers of GET /slow/{seconds} now running.
    running: list[float] = field(factory=list)

    @property
    def tracker(self) -> Any:
        return self.listeners.site.connections

    def begin_drain(self) -> defer.Deferred[None]:
        """Phases 2 and 3, as the drain service runs them."""
        closed = self.listeners.stop_accepting()
        self.listeners.drain_connections()
        return closed

    async def wait_running(self, count: int = 1) -> None:
        deadline = time.monotonic() + 10
        while len(self.running) < count:
            assert time.monotonic() < deadline, "the handler never started"
            await sleep(0.01)


@pytest.fixture
def served(wire: str) -> Iterator[Served]:
    router = Router()
    state: list[Served] = []

    @router.route("GET", "/slow/{seconds}", rate_limit=None)
    async def slow(_ctx: Any, seconds: str) -> Response:
        state[0].running.append(float(seconds))
        await sleep(float(seconds))
        return Response(body=b"slept", content_type=b"text/plain")

    @router.route("POST", "/upload", rate_limit=None)
    def upload(ctx: Any) -> dict[str, int]:
        return {"received": len(ctx.request.content.read())}

    @router.route("GET", "/quick", rate_limit=None)
    def quick(_ctx: Any) -> Response:
        return Response(body=b"quick", content_type=b"text/plain")

    site = build_site(router, HttpSettings(wire=wire), mounts={b"ws": TakeOver()})
    listeners = HttpListeners(reactor, ("tcp:0:interface=127.0.0.1",), site)
    listeners.startService()
    state.append(Served(listeners, listeners.ports[0].getHost().port))
    yield state[0]
    pytest_twisted.blockon(listeners.stopService())


def in_thread(fn: Any, *args: Any) -> defer.Deferred[Any]:
    return threads.deferToThread(fn, *args)


@pytest_twisted.ensureDeferred
async def test_after_the_drain_begins_each_response_says_close_and_ends_its_connection(
    served: Served,
) -> None:
    """A kept-alive connection answered keep-alive before the drain gets its next
    request answered with Connection: close, and is closed right after it; the
    listener refuses new connections."""
    client = await in_thread(RawClient, served.port)
    before = await in_thread(client.get, "/quick")
    assert (before.status, before.closes) == (200, False)
    await served.begin_drain()
    after = await in_thread(client.get, "/quick")
    assert (after.status, after.body, after.closes) == (200, b"quick", True)
    assert await in_thread(client.closed, 2.0) is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", served.port), 1):
        pass
    client.close()


@pytest_twisted.ensureDeferred
async def test_idle_connections_close_once_quiet_and_a_request_in_the_window_is_answered(
    served: Served,
) -> None:
    """An idle connection quiet for QUIET_SECONDS closes as the drain begins; one that
    has just been answered stays open for that long, so the request its client sends
    next is answered (with Connection: close) instead of racing the close."""
    quiet = await in_thread(RawClient, served.port)
    await in_thread(quiet.get, "/quick")
    recent = await in_thread(RawClient, served.port)
    await sleep(QUIET_SECONDS + 0.3)
    await in_thread(recent.get, "/quick")
    await served.begin_drain()
    closed_after = await in_thread(quiet.closed, 1.0)
    assert closed_after is not None, "the quiet connection stayed open"
    answer = await in_thread(recent.get, "/quick")
    assert (answer.status, answer.closes) == (200, True)
    assert await in_thread(recent.closed, 2.0) is not None
    assert served.tracker.closed_idle == 1
    quiet.close()
    recent.close()


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_that_stays_silent_closes_after_the_quiet_time(
    served: Served,
) -> None:
    """A connection answered just before the drain, whose client then sends nothing,
    is closed about QUIET_SECONDS after its last response, not kept until the grace."""
    client = await in_thread(RawClient, served.port)
    await in_thread(client.get, "/quick")
    await served.begin_drain()
    waited = await in_thread(client.closed, QUIET_SECONDS + 3)
    assert waited is not None
    assert waited < QUIET_SECONDS + 2
    client.close()


@pytest_twisted.ensureDeferred
async def test_a_request_being_handled_when_the_drain_begins_is_answered_with_close(
    served: Served,
) -> None:
    """A request whose handler is running when the drain begins is answered in full,
    saying Connection: close, and its connection then closes."""
    client = await in_thread(RawClient, served.port)
    client.send(b"GET /slow/0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
    await served.wait_running()
    await served.begin_drain()
    answer = await in_thread(client.answer)
    assert (answer.status, answer.body, answer.closes) == (200, b"slept", True)
    assert await in_thread(client.closed, 2.0) is not None
    client.close()


@pytest_twisted.ensureDeferred
async def test_a_post_whose_body_is_still_arriving_is_read_to_the_end_and_answered(
    served: Served,
) -> None:
    """A POST whose head and half its body arrived before the drain, and the rest a
    while after it, is read to the end and answered (Connection: close)."""
    body = b"x" * 100_000
    client = await in_thread(RawClient, served.port)
    client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream"
                b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:50_000])
    await sleep(0.2)
    await served.begin_drain()
    await sleep(QUIET_SECONDS + 0.5)  # longer than an idle connection would be kept
    client.send(body[50_000:])
    answer = await in_thread(client.answer)
    assert answer.status == 200, answer
    assert answer.body == b'{"success":true,"data":{"received":100000}}'
    assert answer.closes
    client.close()


@pytest_twisted.ensureDeferred
async def test_a_request_sent_behind_a_running_one_is_answered_too(served: Served) -> None:
    """A client that pipelined a second request behind one still running when the
    drain begins gets both answered: the first as it began, the second with
    Connection: close, then the close."""
    client = await in_thread(RawClient, served.port)
    client.send(b"GET /slow/0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
    await served.wait_running()
    client.send(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
    await sleep(0.05)
    await served.begin_drain()
    first = await in_thread(client.answer)
    second = await in_thread(client.answer)
    assert (first.status, first.body) == (200, b"slept")
    assert (second.status, second.body, second.closes) == (200, b"quick", True)
    assert await in_thread(client.closed, 2.0) is not None
    client.close()


@pytest_twisted.ensureDeferred
async def test_at_the_end_of_the_grace_a_running_request_is_answered_503_and_logged(
    served: Served,
) -> None:
    """A handler still running when the grace ends: its client gets a 503 in the error
    envelope (Connection: close), a warning names the request, and the drain reports
    it cut."""
    client = await in_thread(RawClient, served.port)
    client.send(b"GET /slow/30 HTTP/1.1\r\nHost: t\r\nX-Request-ID: cut-me\r\n\r\n")
    await served.wait_running()
    started = time.monotonic()
    with captured_events() as events:
        ended = await served.listeners.drain(0.5)
    assert time.monotonic() - started < 3
    answer = await in_thread(client.answer)
    assert answer.status == 503
    assert answer.closes
    assert b'"code":"UNAVAILABLE"' in answer.body
    assert b'"requestId":"cut-me"' in answer.body
    assert ended == {"requests_cut": 1, "connections_aborted": 0}
    warned = [e for e in events if "answered 503" in e["log_format"] and "request_id" in e]
    assert [e["request_id"] for e in warned] == ["cut-me"]
    assert served.listeners.site.api.in_flight == 0
    client.close()


@pytest_twisted.ensureDeferred
async def test_at_the_end_of_the_grace_a_request_still_arriving_is_answered_503(
    served: Served,
) -> None:
    """A POST whose body has not all arrived when the grace ends is answered 503 (the
    envelope, Connection: close) and its connection closed."""
    client = await in_thread(RawClient, served.port)
    client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await sleep(0.2)
    ended = await served.listeners.drain(0.3)
    answer = await in_thread(client.answer)
    assert (answer.status, answer.closes) == (503, True)
    assert b'"code":"UNAVAILABLE"' in answer.body
    assert ended["requests_cut"] == 0  # never reached a handler
    assert await in_thread(client.closed, 5.0) is not None
    client.close()


@pytest_twisted.ensureDeferred
async def test_an_upgraded_connection_leaves_the_tracker_and_is_not_waited_for(
    served: Served,
) -> None:
    """A connection taken over by a WebSocket-style upgrade is no longer counted as an
    HTTP connection (tracker and /metrics gauge), keeps working, and a drain does not
    wait for it; closing it later leaves nothing behind."""
    open_before = open_connections()
    client = await in_thread(RawClient, served.port)
    client.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
    switched = await in_thread(client.answer)
    assert switched.status == 101
    assert len(served.tracker) == 0
    assert served.tracker.upgrades == 1
    assert open_connections() == open_before
    client.send(b"still here")
    echoed = await in_thread(client.sock.recv, 100)
    assert echoed == b"still here"
    started = time.monotonic()
    await served.listeners.drain(5.0)
    assert time.monotonic() - started < 1.0, "the drain waited for the upgraded connection"
    client.close()
    await sleep(0.1)
    assert len(served.tracker) == 0
    assert open_connections() == open_before


def test_bytes_waiting_in_a_socket_are_seen_without_being_read() -> None:
    """socket_has_bytes peeks: true while the peer's bytes wait unread (and they are
    still there to read), false on a silent socket and on transports without one."""

    class Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def getHandle(self) -> socket.socket:
            return self.sock

    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not socket_has_bytes(Transport(ours))
        theirs.sendall(b"GET /")
        time.sleep(0.05)
        assert socket_has_bytes(Transport(ours))
        assert ours.recv(10) == b"GET /"
        assert not socket_has_bytes(object())
