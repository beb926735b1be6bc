"""HTTP/1.1 clients on raw connections that record every request written and every
response read, so a test can tell a request answered from one cut.

:class:`LoopingClient` keeps one connection and sends its next request as soon as a
response is in, as a busy client behind a load balancer does; :func:`one_request`
sends one request on a connection of its own.
"""

from __future__ import annotations

import time
from typing import Any

from attrs import define, field
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure


@define
class Exchange:
    """One request and what came back (``status`` None: no answer before the close)."""

    path: str
    written_at: float
    answered_at: float | None = None
    status: int | None = None
    closes: bool = False
    body: bytes = b""


class _ResponseReader:
    """Splits the bytes of a connection into responses (Content-Length bodies only)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
        self.buffer += data
        out = []
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(rest) < length:
                break
            out.append((int(lines[0].split(" ", 2)[1]), headers, rest[:length]))
            self.buffer = rest[length:]
        return out


@define(eq=False)
class LoopingClient(Protocol):
    """Sends ``GET path`` back to back on one connection until told to stop or the
    server says ``Connection: close``."""

    path: str
    exchanges: list[Exchange] = field(factory=list)
    stopping: bool = False
    lost: defer.Deferred[None] = field(factory=defer.Deferred)
    _reader: _ResponseReader = field(factory=_ResponseReader)
    _waiting: Exchange | None = None

    def connectionMade(self) -> None:
        self._send()

    def _send(self) -> None:
        if self.stopping:
            assert self.transport is not None
            self.transport.loseConnection()
            return
        self._waiting = Exchange(self.path, time.monotonic())
        self.exchanges.append(self._waiting)
        assert self.transport is not None
        self.transport.write(f"GET {self.path} HTTP/1.1\r\nHost: e2e\r\n\r\n".encode())

    def dataReceived(self, data: bytes) -> None:
        for status, headers, body in self._reader.feed(data):
            exchange = self._waiting
            assert exchange is not None, "a response nobody asked for"
            self._waiting = None
            exchange.answered_at = time.monotonic()
            exchange.status = status
            exchange.closes = headers.get("connection", "").lower() == "close"
            exchange.body = body
            if not exchange.closes:
                self._send()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)

    @property
    def unanswered(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.status is None]


async def open_looping(port: int, path: str) -> LoopingClient:
    client = LoopingClient(path)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await endpoint.connect(Factory.forProtocol(lambda: client))
    return client


@define(eq=False)
class _OneShot(Protocol):
    request: bytes
    exchange: Exchange
    done: defer.Deferred[Exchange] = field(factory=defer.Deferred)
    _reader: _ResponseReader = field(factory=_ResponseReader)

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        for status, headers, body in self._reader.feed(data):
            self.exchange.status = status
            self.exchange.answered_at = time.monotonic()
            self.exchange.closes = headers.get("connection", "").lower() == "close"
            self.exchange.body = body
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(self.exchange)


async def one_request(port: int, path: str, request: bytes | None = None,
                      after_connect: Any = None) -> Exchange:
    """``GET path`` (or ``request``) on a new connection; raises if it cannot connect."""
    exchange = Exchange(path, time.monotonic())
    raw = request or f"GET {path} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n".encode()
    protocol = _OneShot(raw, exchange)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2)
    await endpoint.connect(Factory.forProtocol(lambda: protocol))
    if after_connect is not None:
        after_connect(protocol)
    return await protocol.done


@define(eq=False)
class KeptAlive(Protocol):
    """One connection kept open for requests sent one at a time with :meth:`get`."""

    _reader: _ResponseReader = field(factory=_ResponseReader)
    _waiting: list[tuple[Exchange, defer.Deferred[Exchange]]] = field(factory=list)

    def get(self, path: str) -> defer.Deferred[Exchange]:
        exchange = Exchange(path, time.monotonic())
        answered: defer.Deferred[Exchange] = defer.Deferred()
        self._waiting.append((exchange, answered))
        assert self.transport is not None
        self.transport.write(f"GET {path} HTTP/1.1\r\nHost: e2e\r\n\r\n".encode())
        return answered

    def dataReceived(self, data: bytes) -> None:
        for status, headers, body in self._reader.feed(data):
            exchange, answered = self._waiting.pop(0)
            exchange.status, exchange.body = status, body
            exchange.answered_at = time.monotonic()
            exchange.closes = headers.get("connection", "").lower() == "close"
            answered.callback(exchange)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        waiting, self._waiting = self._waiting, []
        for exchange, answered in waiting:
            answered.callback(exchange)  # status None: never answered


async def open_kept_alive(port: int) -> KeptAlive:
    protocol = KeptAlive()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await endpoint.connect(Factory.forProtocol(lambda: protocol))
    return protocol
