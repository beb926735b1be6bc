"""A TCP proxy in front of the private redis-server that can lose a reply on purpose.

``ReplyLosingProxy.lose_reply_to(marker)``: the next command whose bytes contain
``marker`` (e.g. a script's sha) reaches Redis and runs there, but its reply never
reaches the client: the proxy closes that client connection instead, as a Redis
restart or a network cut right after the command would. Everything else is forwarded
as it is, over real sockets.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.interfaces import IListeningPort


class _Upstream(protocol.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.client.reply(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.client.transport.loseConnection()


class _Client(protocol.Protocol):
    factory: ReplyLosingProxy

    def __init__(self) -> None:
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []
        self.doomed = False

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        creator = protocol.ClientCreator(reactor, _Upstream, self)
        d = creator.connectTCP("127.0.0.1", self.factory.redis_port)
        d.addErrback(lambda _: self.transport.loseConnection())

    def upstream_ready(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        marker = self.factory.marker
        if marker is not None and marker in data:
            self.factory.marker = None
            self.doomed = True
            self.factory.lost += 1
        assert self.upstream is not None
        self.upstream.transport.write(data)

    def reply(self, data: bytes) -> None:
        if self.doomed:
            # The command ran; its reply goes nowhere and the connection dies.
            self.transport.abortConnection()
            if self.upstream is not None:
                self.upstream.transport.loseConnection()
            return
        self.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class ReplyLosingProxy(protocol.ServerFactory):
    protocol = _Client

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.marker: bytes | None = None
        self.lost = 0
        self.port: IListeningPort = reactor.listenTCP(0, self, interface="127.0.0.1")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port.getHost().port}/0"

    def lose_reply_to(self, marker: bytes) -> None:
        self.marker = marker

    def close(self) -> Any:
        return self.port.stopListening()
