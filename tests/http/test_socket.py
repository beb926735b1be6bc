"""Over a real listening socket, on each HTTP wire: body limits, access log, mounts."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import treq
from attrs import frozen
from twisted.internet import threads
from twisted.web.resource import Resource

from installsure.http import HttpSettings, Router, build_site
from tests.http.helpers import captured_events, listening


@frozen
class Echo:
    text: str


class Hello(Resource):
    isLeaf = True

    def render_GET(self, _request: Any) -> bytes:
        return b"mounted"


@pytest.fixture
def port(wire: str) -> Iterator[int]:
    router = Router()

    @router.route("POST", "/api/echo", body=Echo, rate_limit=None)
    def echo(_ctx: Any, body: Echo) -> Echo:
        return body

    site = build_site(router, HttpSettings(max_body_size=1000, wire=wire),
                      mounts={b"ws": Hello()})
    with listening(site) as number:
        yield number


def _exchange(port: int, request: bytes, body_chunks: list[bytes]) -> bytes:
    """Send raw HTTP (headers, then chunks) and read until the server closes (5 s max)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            received += data
        return received


@pytest.mark.parametrize("wire", ["fast"])
@pytest_twisted.ensureDeferred
async def test_content_length_over_limit_answers_413_before_the_body(port: int) -> None:
    """A Content-Length over the limit is refused at once with 413 in the envelope, and the
    connection is closed without waiting for the body. (Fast wire only: the stock one
    reads the whole body first, see the next test.)"""
    request = (
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: big-1\r\nContent-Length: 50000000\r\n\r\n"
    )
    with captured_events("installsure.access") as events:
        answer = await threads.deferToThread(_exchange, port, request, [])
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"X-Request-ID: big-1" in head
    assert b"X-Content-Type-Options: nosniff" in head
    assert re.search(rb"X-Response-Time: \d+\.\d\dms", head)
    envelope = json.loads(body)
    assert envelope["code"] == "PAYLOAD_TOO_LARGE"
    assert envelope["requestId"] == "big-1"
    assert [e["status"] for e in events] == [413]


@pytest.mark.parametrize("chunked", [False, True])
@pytest_twisted.ensureDeferred
async def test_a_whole_body_over_the_limit_is_answered_413(port: int, chunked: bool) -> None:
    """A body over the limit, sent whole (with Content-Length or chunked), is answered
    413 in the envelope with the request id, on either wire."""
    head = b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"X-Request-ID: whole-1\r\nConnection: close\r\n"
    if chunked:
        request = head + b"Transfer-Encoding: chunked\r\n\r\n"
        body = [b"%x\r\n%s\r\n" % (400, b"x" * 400)] * 5 + [b"0\r\n\r\n"]
    else:
        request = head + b"Content-Length: 2000\r\n\r\n"
        body = [b"x" * 2000]
    answer = await threads.deferToThread(_exchange, port, request, body)
    head_out, _, envelope = answer.partition(b"\r\n\r\n")
    assert head_out.startswith(b"HTTP/1.1 413 ")
    assert b"x-request-id: whole-1" in head_out.lower()  # names are case-insensitive
    assert json.loads(envelope)["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("wire", ["fast"])
@pytest_twisted.ensureDeferred
async def test_chunked_body_over_limit_is_cut_off_while_reading(port: int) -> None:
    """A chunked body is counted as it arrives and refused with 413 once over the limit
    (fast wire only: the stock one reads a chunked body to its end)."""
    request = (
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (400, b"x" * 400)
    answer = await threads.deferToThread(_exchange, port, request, [chunk] * 50)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"code":"PAYLOAD_TOO_LARGE"' in answer


@pytest_twisted.ensureDeferred
async def test_access_log_and_normal_requests_over_treq(port: int) -> None:
    """A real request is answered normally and logged once with its fields; mounts work."""
    url = f"http://127.0.0.1:{port}"
    with captured_events("installsure.access") as events:
        response = await treq.post(
            url + "/api/echo?token=hide", json={"text": "hi"}, headers={"X-Request-ID": "r-1"}
        )
        body = await response.json()
    assert response.code == 200
    assert body == {"success": True, "data": {"text": "hi"}}
    assert response.headers.getRawHeaders("server") is None
    assert len(events) == 1
    event = events[0]
    assert event["method"] == "POST"
    assert event["route"] == "/api/echo"
    assert event["status"] == 200
    assert event["requestId"] == "r-1"
    assert event["remote"] == "127.0.0.1"
    assert event["bytes"] == len(json.dumps(body, separators=(",", ":")))
    assert "hide" not in event["path"]
    mounted = await treq.get(url + "/ws")
    assert await mounted.content() == b"mounted"


@pytest_twisted.ensureDeferred
async def test_large_bodies_head_and_pipelining_over_the_direct_send_path(port: int) -> None:
    """Responses bigger than the socket buffer arrive whole, HEAD and 204 carry no body,
    and pipelined requests are answered in order."""
    url = f"http://127.0.0.1:{port}"
    bundle = await treq.get(url + "/docs/swagger-ui-bundle.js", persistent=False)
    data = await bundle.content()
    assert len(data) > 1_000_000
    assert data.rstrip().endswith(b";") or data.rstrip().endswith(b")")
    head = await treq.head(url + "/metrics", persistent=False)
    assert head.code == 200
    assert await head.content() == b""
    preflight = await treq.request("OPTIONS", url + "/api/echo", persistent=False)
    assert preflight.code == 204
    request = (
        b"GET /nowhere-1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nowhere-2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = await threads.deferToThread(_exchange, port, request, [])
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"404", b"200", b"404"]
    assert answer.index(b"/nowhere-1") < answer.index(b"/nowhere-2")


@pytest_twisted.ensureDeferred
async def test_early_413_replaces_a_dangerous_request_id(port: int) -> None:
    """A 413 applies the same request-id rules (the early one of the fast wire, and the
    application's in the stock wire): non-ASCII bytes get a new UUID."""
    request = (
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: \xff\xfe-bad\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    answer = await threads.deferToThread(_exchange, port, request, [b"x" * 5000])
    assert answer.startswith(b"HTTP/1.1 413 ")
    match = re.search(rb"(?i)X-Request-ID: ([0-9a-f-]{36})\r\n", answer)
    assert match is not None
    assert b"\xff" not in answer
