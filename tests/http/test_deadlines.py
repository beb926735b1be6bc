"""Slow clients, over real sockets on each HTTP wire: a head or body that trickles in is
answered 408 and closed; steady uploads, slow handlers and idle keep-alive connections
are left alone. Short timeouts, so each case takes about a second."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from attrs import frozen
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater

from installsure.http import HttpSettings, Router, build_site
from tests.http.helpers import captured_events, listening

HEADER_TIMEOUT = 0.6
BODY_TIMEOUT = 0.6
BODY_MIN_RATE = 200  # bytes per second
#: How much later than its deadline a 408 may come on a loaded machine.
SLACK = 2.0


@frozen
class Note:
    text: str


@pytest.fixture
def port(wire: str) -> Iterator[int]:
    router = Router()

    @router.route("POST", "/api/notes", body=Note, rate_limit=None)
    def note(_ctx: Any, body: Note) -> Note:
        return body

    @router.route("GET", "/api/ping", rate_limit=None)
    def ping(_ctx: Any) -> dict[str, bool]:
        return {"pong": True}

    @router.route("GET", "/api/slow", rate_limit=None)
    async def slow(_ctx: Any) -> dict[str, bool]:
        await deferLater(reactor, HEADER_TIMEOUT * 2, lambda: None)  # type: ignore[arg-type]
        return {"done": True}

    settings = HttpSettings(
        wire=wire, header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT,
        body_min_rate=BODY_MIN_RATE, idle_timeout=30.0, max_body_size=100_000,
    )
    with listening(build_site(router, settings)) as number:
        yield number


def _trickle(port: int, first: bytes, drip: bytes, every: float, for_at_most: float) -> tuple[
    bytes, float
]:
    """Send ``first``, then ``drip`` byte by byte every ``every`` seconds until the
    server answers or ``for_at_most`` seconds pass; everything the server sent until it
    closed, and when its answer began (seconds after ``first``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        started = time.monotonic()
        sock.settimeout(every)
        received = b""
        answered = -1.0
        for byte in drip:
            if time.monotonic() - started > for_at_most:
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                continue
            except ConnectionResetError:
                break
            if answered < 0:
                answered = time.monotonic() - started
            received += data
            if not data:
                break
        sock.settimeout(5)
        try:
            while data := sock.recv(65536):
                if answered < 0:
                    answered = time.monotonic() - started
                received += data
        except (TimeoutError, ConnectionResetError):
            pass
        return received, answered


def _assert_408(answer: bytes, code_reason: str = "Request Timeout") -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 " + code_reason.encode()), answer[:200]
    lines = head.lower().split(b"\r\n")
    assert b"connection: close" in lines
    assert b"x-content-type-options: nosniff" in lines
    envelope: dict[str, Any] = json.loads(body)
    assert envelope["code"] == "REQUEST_TIMEOUT"
    assert envelope["success"] is False
    return envelope


@pytest.mark.parametrize(
    "first",
    [
        # (A header line counts once the next one begins: it might continue.)
        b"GET /api/ping HTTP/1.1\r\nHost: x\r\nX-Request-ID: slow-1\r\nAccept: */*\r\nX-Slow: ",
        b"GET /api/pi",
    ],
    ids=["in the headers", "in the request line"],
)
@pytest_twisted.ensureDeferred
async def test_a_head_that_trickles_in_is_answered_408_and_closed(port: int, first: bytes) -> None:
    """A head sent one byte at a time, each restarting the idle timeout, is answered
    408 in the envelope once header_timeout has passed since its first byte, and the
    connection is closed; the refusal has an access line."""
    with captured_events("installsure.access") as access:
        answer, after = await threads.deferToThread(
            _trickle, port, first, b"a" * 1000, 0.05, HEADER_TIMEOUT + SLACK + 2
        )
    envelope = _assert_408(answer)
    assert HEADER_TIMEOUT - 0.1 < after < HEADER_TIMEOUT + SLACK
    if b"X-Request-ID" in first:
        assert envelope["requestId"] == "slow-1"
    assert [event["status"] for event in access] == [408]


@pytest_twisted.ensureDeferred
async def test_a_body_that_trickles_in_is_answered_408_and_closed(port: int) -> None:
    """A declared body arriving at 20 bytes a second (below body_min_rate) is answered
    408 once body_timeout, extended by what did arrive, has passed."""
    head = (
        b"POST /api/notes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    answer, after = await threads.deferToThread(
        _trickle, port, head, b"x" * 5000, 0.05, BODY_TIMEOUT + SLACK + 3
    )
    _assert_408(answer)
    # Due at BODY_TIMEOUT + received / BODY_MIN_RATE, received growing 20 bytes a second.
    assert BODY_TIMEOUT - 0.1 < after < BODY_TIMEOUT * 1.5 + SLACK


def _steady_upload(port: int, total: int, chunk: int, every: float) -> bytes:
    body = json.dumps({"text": "n" * (total - 11)}, separators=(",", ":")).encode()
    assert len(body) == total
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/notes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % total
        )
        for start in range(0, total, chunk):
            sock.sendall(body[start:start + chunk])
            time.sleep(every)
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


@pytest_twisted.ensureDeferred
async def test_a_steady_upload_slower_than_the_body_timeout_is_served(port: int) -> None:
    """A body sent at 1000 bytes a second (over body_min_rate) that takes longer than
    body_timeout in all goes on: each byte received extends its deadline."""
    answer = await threads.deferToThread(_steady_upload, port, 1200, 100, 0.1)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def _two_requests(port: int, pause: float, path: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 ") < 1 or not received.endswith(b"}"):
            received += sock.recv(65536)
        time.sleep(pause)
        sock.sendall(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while data := sock.recv(65536):
            received += data
        return received


@pytest_twisted.ensureDeferred
async def test_slow_handlers_and_idle_keep_alive_connections_are_not_timed_out(
    port: int,
) -> None:
    """The head deadline runs only while a head is arriving: a handler slower than
    header_timeout, and a keep-alive connection silent for longer than it between
    requests, are both served."""
    answer = await threads.deferToThread(_two_requests, port, HEADER_TIMEOUT * 2, b"/api/slow")
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200"], answer
