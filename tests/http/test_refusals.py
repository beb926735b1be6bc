"""Answers the server gives on its own, before the application sees a request: the
early 413, a 408 for a request too slow to arrive (over an in-memory TCP-like
transport with a clock of the channel's own), and the parser's refusals (over a real
socket)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from attrs import frozen
from twisted.internet import address, threads
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from installsure.http import HttpSettings, Router, build_site
from installsure.http.refusal import LINGER_SECONDS
from tests.http.helpers import captured_events, listening

PEER = address.IPv4Address("TCP", "127.0.0.1", 50000)
HOST = address.IPv4Address("TCP", "127.0.0.1", 8000)


@implementer(ITCPTransport)
class HalfClosingTransport(StringTransport):
    """A StringTransport that is a TCP transport: it can half-close and abort."""

    write_closed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        """HTTPChannel asks for it on every TCP connection."""

    def abortConnection(self) -> None:
        self.aborted = True


@frozen
class Echo:
    text: str


def _connection(clock: Clock) -> tuple[Any, HalfClosingTransport]:
    router = Router()

    @router.route("POST", "/api/echo", body=Echo, rate_limit=None)
    def echo(_ctx: Any, body: Echo) -> Echo:
        return body

    site = build_site(router, HttpSettings(max_body_size=1000))
    channel = site.buildProtocol(PEER)
    channel.callLater = clock.callLater
    wire = HalfClosingTransport(peerAddress=PEER, hostAddress=HOST)
    channel.makeConnection(wire)
    return channel, wire


def test_the_early_413_answers_in_the_requests_version_and_lingers_on_the_channels_clock() -> None:
    """A declared body over the limit is refused at once: in the request's HTTP version,
    with the envelope, the client's request id and an access line; the connection is
    half-closed and aborted LINGER_SECONDS later on the channel's own clock (not the
    global reactor's), unless the client closes first."""
    clock = Clock()
    channel, wire = _connection(clock)
    idle_checks = len(clock.getDelayedCalls())
    with captured_events("installsure.access") as access:
        channel.dataReceived(
            b"POST /api/echo HTTP/1.0\r\nX-Request-ID: big-1\r\n"
            b"Content-Length: 50000000\r\n\r\n" + b"x" * 100
        )
    head, _, body = wire.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 413 Payload Too Large\r\n")
    assert b"\r\nX-Request-ID: big-1\r\n" in head
    assert b"\r\nConnection: close" in head
    assert json.loads(body)["code"] == "PAYLOAD_TOO_LARGE"
    assert [(e["status"], e["requestId"], e["method"]) for e in access] == [
        (413, "big-1", "POST")
    ]
    assert wire.write_closed
    assert len(clock.getDelayedCalls()) == idle_checks + 1
    channel.dataReceived(b"x" * 1000)  # the rest of the body is dropped unread
    assert wire.value() == head + b"\r\n\r\n" + body
    clock.advance(LINGER_SECONDS)
    assert wire.aborted


def test_a_client_that_closes_first_leaves_no_linger_behind() -> None:
    """When the client closes after reading the 413, the pending abort is cancelled."""
    clock = Clock()
    channel, wire = _connection(clock)
    channel.dataReceived(b"POST /api/echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")
    assert wire.value().startswith(b"HTTP/1.1 413 ")
    channel.connectionLost(connectionDone)
    assert clock.getDelayedCalls() == []
    assert not wire.aborted


def _connection_on(wire: str, clock: Clock, **settings: Any) -> tuple[Any, HalfClosingTransport]:
    """A connection of an API site on ``wire`` whose clocks are ``clock``."""
    router = Router()

    @router.route("POST", "/api/echo", body=Echo, rate_limit=None)
    def echo(_ctx: Any, body: Echo) -> Echo:
        return body

    site = build_site(router, HttpSettings(wire=wire, **settings))  # type: ignore[arg-type]
    protocol = site.buildProtocol(PEER)
    channel = getattr(protocol, "channel", protocol)  # a StockConnection's HTTPChannel
    channel.callLater = clock.callLater
    wire_transport = HalfClosingTransport(peerAddress=PEER, hostAddress=HOST)
    protocol.makeConnection(wire_transport)
    return protocol, wire_transport


def test_the_head_deadline_counts_from_the_first_byte(wire: str) -> None:
    """A head still incomplete header_timeout seconds after its first byte is answered
    408, however recently its last byte came; a second before, nothing is sent."""
    clock = Clock()
    protocol, transport = _connection_on(wire, clock, header_timeout=20.0)
    protocol.dataReceived(b"GET /api/echo HTTP/1.1\r\nHost: x\r\n")
    for _ in range(19):
        clock.advance(1)
        protocol.dataReceived(b"X-A: 1\r\n")
    assert transport.value() == b""
    clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert transport.write_closed


def test_the_body_deadline_grows_with_the_bytes_received(wire: str) -> None:
    """A body has body_timeout seconds and one more per body_min_rate bytes received:
    with 1000 bytes in, 10 s + 1000/100 s = 20 s after the head."""
    clock = Clock()
    protocol, transport = _connection_on(
        wire, clock, body_timeout=10.0, body_min_rate=100, max_body_size=100_000
    )
    protocol.dataReceived(
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000\r\n\r\n"
    )
    clock.advance(1)
    protocol.dataReceived(b"x" * 1000)
    clock.advance(18.9)
    assert transport.value() == b""
    clock.advance(0.2)
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b'"code":"REQUEST_TIMEOUT"' in transport.value()


# -- refusals of the parser, over a real socket ----------------------------------------

#: Requests twisted.web's parser refuses, the status each gets, and whether the
#: client's X-Request-ID was read before the refusal (a header line is read once the
#: next one begins: it might continue on the next line).
PARSER_REFUSALS = {
    "request line without a version": (b"GET /\r\nX-Request-ID: p-1\r\n\r\n", 400, False),
    "space before a header's colon": (
        b"GET / HTTP/1.1\r\nX-Request-ID: p-1\r\nHost : x\r\n\r\n", 400, True
    ),
    "NUL in a header value": (
        b"GET / HTTP/1.1\r\nX-Request-ID: p-1\r\nX-A: a\x00b\r\n\r\n", 400, True
    ),
    "Content-Length that is not a number": (
        b"POST /api/echo HTTP/1.1\r\nX-Request-ID: p-1\r\nContent-Length: 1e3\r\n\r\n",
        400, True,
    ),
    "chunk size that is not hex": (
        b"POST /api/echo HTTP/1.1\r\nX-Request-ID: p-1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n",
        400, True,
    ),
    "more header lines than allowed": (
        b"GET / HTTP/1.1\r\nX-Request-ID: p-1\r\n" + b"X-A: 1\r\n" * 501 + b"\r\n", 431, True
    ),
    "a head over the size limit": (
        b"GET / HTTP/1.1\r\nX-Request-ID: p-1\r\n" + (b"X-A: " + b"a" * 6000 + b"\r\n") * 3
        + b"\r\n",
        431, True,
    ),
    "a line longer than is read": (
        b"GET / HTTP/1.1\r\nX-Request-ID: p-1\r\nHost: x\r\nX-A: " + b"a" * 17000
        + b"\r\n\r\n",
        431, True,
    ),
}


@pytest.fixture
def port(wire: str) -> Iterator[int]:
    with listening(build_site(Router(), HttpSettings(wire=wire))) as number:
        yield number


def _send_and_read(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass
        return received


@pytest.mark.parametrize("wire", ["fast"])
@pytest.mark.parametrize(
    ("request_bytes", "status", "id_read"), PARSER_REFUSALS.values(), ids=PARSER_REFUSALS.keys()
)
@pytest_twisted.ensureDeferred
async def test_parser_refusals_have_the_envelope_request_id_and_access_line_on_the_fast_wire(
    port: int, request_bytes: bytes, status: int, id_read: bool
) -> None:
    """Whatever twisted.web's parser refuses is answered like any API error on the
    fast wire: the envelope (BAD_REQUEST, or HEADERS_TOO_LARGE with 431 for a head
    over its limits), the client's X-Request-ID once it was read (else a new one), the
    security headers, one access line, and the connection closed."""
    with captured_events("installsure.access") as access:
        answer = await threads.deferToThread(_send_and_read, port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 %d " % status), answer[:300]
    assert b"Connection: close" in lines
    assert b"X-Content-Type-Options: nosniff" in lines
    envelope = json.loads(body)
    assert envelope["code"] == ("BAD_REQUEST" if status == 400 else "HEADERS_TOO_LARGE")
    request_id = "p-1" if id_read else envelope["requestId"]
    assert envelope["requestId"] == request_id
    assert b"X-Request-ID: " + request_id.encode() in lines
    assert [(e["status"], e["requestId"]) for e in access] == [(status, request_id)]


@pytest.mark.parametrize("wire", ["stock"])
@pytest.mark.parametrize(
    "request_bytes", [case[0] for case in PARSER_REFUSALS.values()], ids=PARSER_REFUSALS.keys()
)
@pytest_twisted.ensureDeferred
async def test_parser_refusals_are_twisted_webs_own_on_the_stock_wire(
    port: int, request_bytes: bytes
) -> None:
    """The stock wire leaves them to twisted.web, as README says: a bare ``400 Bad
    Request`` (for heads over their limits too) without envelope, request id or access
    line, and for a line longer than is read no answer at all; the connection closes."""
    with captured_events("installsure.access") as access:
        answer = await threads.deferToThread(_send_and_read, port, request_bytes)
    too_long_a_line = b"a" * 17000 in request_bytes
    assert answer == (b"" if too_long_a_line else b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert access == []
