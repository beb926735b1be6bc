"""``http.wire``: the fast wire and the stock one each serve the API as README says."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from attrs import define
from twisted.internet import reactor, threads
from twisted.web import http, server

from installsure.config import ConfigError, load_config
from installsure.config.values import InvalidSettingError
from installsure.http import ApiError, HttpSettings, Router, build_site
from installsure.http._wire import ApiChannel, ApiRequest
from installsure.http.incoming import StreamingRequest
from installsure.http.site import ApiSite
from installsure.http.stock import StockChannel


def test_the_wire_is_a_setting_with_its_own_variable() -> None:
    """http.wire defaults to "fast", INSTALLSURE_HTTP_WIRE chooses it, and anything but
    fast or stock is refused, naming the key and where the value came from."""
    assert load_config(environ={}).http.wire == "fast"
    assert load_config(environ={"INSTALLSURE_HTTP_WIRE": "stock"}).http.wire == "stock"
    with pytest.raises(ConfigError) as refused:
        load_config(environ={"INSTALLSURE_HTTP_WIRE": "turbo"})
    assert "http.wire (environment variable INSTALLSURE_HTTP_WIRE)" in refused.value.report()
    with pytest.raises(InvalidSettingError, match=r"http\.wire must be one of fast, stock"):
        HttpSettings(wire="turbo")  # type: ignore[arg-type]


@define
class Served:
    """A listening site on 127.0.0.1 that remembers the kinds of request and channel
    it served with."""

    site: ApiSite
    port: Any
    seen: list[Any]

    @property
    def number(self) -> int:
        return int(self.port.getHost().port)


@pytest.fixture
def served(wire: str) -> Iterator[Served]:
    seen: list[Any] = []
    router = Router()

    @router.route("GET", "/api/who", rate_limit=None)
    def who(ctx: Any) -> dict[str, str]:
        seen.append((type(ctx.request), type(ctx.request.channel)))
        return {"wire": wire}

    @router.route("GET", "/api/taken", rate_limit=None)
    def taken(_ctx: Any) -> None:
        raise ApiError("CONFLICT", "Taken.")

    site = build_site(router, HttpSettings(wire=wire, idle_timeout=0.5))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    yield Served(site, port, seen)
    pytest_twisted.blockon(port.stopListening())


def _ask(port: int, requests: bytes) -> tuple[bytes, float]:
    """Send ``requests`` on one connection and read until the server closes it; the
    answer and how long the server took to close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(requests)
        started = time.monotonic()
        received = b""
        while data := sock.recv(65536):
            received += data
        return received, time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_each_wire_serves_with_its_own_channel_and_request(served: Served, wire: str) -> None:
    """The fast wire serves through ApiChannel and ApiRequest, the stock one through
    twisted.web's own HTTPChannel and server.Request, nothing of ours in between but
    StockChannel's one public override (no keep-alive while draining) and the two
    methods by which a streamed route (uploads) gets its body as it arrives."""
    answer, _ = await threads.deferToThread(
        _ask, served.number, b"GET /api/who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    if wire == "fast":
        assert served.seen == [(ApiRequest, ApiChannel)]
    else:
        assert served.seen == [(StreamingRequest, StockChannel)]
        assert StreamingRequest.__bases__ == (server.Request,)
        overridden = {name for name in vars(StreamingRequest) if callable(
            getattr(StreamingRequest, name)) and not name.startswith("__")}
        assert overridden == {"gotLength", "requestReceived"}
        assert StockChannel.__bases__ == (http.HTTPChannel,)
        own = {name for name in vars(StockChannel) if not name.startswith("__")}
        assert own == {"draining", "checkPersistence"}


@pytest_twisted.ensureDeferred
async def test_each_wire_answers_with_envelope_request_id_and_security_headers(
    served: Served,
) -> None:
    """On either wire an error has the envelope, the client's X-Request-ID, the
    security headers and X-Response-Time, no Server header, and leaves nothing in
    flight; then the connection is closed after the idle timeout."""
    answer, closed_after = await threads.deferToThread(
        _ask, served.number, b"GET /api/taken HTTP/1.1\r\nHost: x\r\nX-Request-ID: m-1\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert lines[0].startswith(b"http/1.1 409 ")
    assert b"x-request-id: m-1" in lines
    assert b"x-content-type-options: nosniff" in lines
    assert any(line.startswith(b"x-response-time: ") for line in lines)
    assert not any(line.startswith(b"server:") for line in lines)
    assert json.loads(body) == {
        "success": False, "error": "Taken.", "code": "CONFLICT", "requestId": "m-1"
    }
    assert served.site.api.in_flight == 0
    assert 0.3 < closed_after < 3.0  # the idle timeout (0.5 s), not the client


def test_an_unknown_wire_is_refused_by_the_site() -> None:
    """ApiSite refuses a wire it does not know, rather than serving on a default."""
    api = build_site(Router(), HttpSettings()).api
    with pytest.raises(ValueError, match="wire must be one of fast, stock"):
        ApiSite(api, wire="turbo")
