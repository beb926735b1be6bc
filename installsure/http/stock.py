"""The stock HTTP wire (``http.wire = "stock"``): twisted.web's own HTTP/1.1, guarded.

Each connection is served by twisted.web's ``HTTPChannel`` and plain ``server.Request``,
with none of the fast wire's shortcuts (``installsure.http._wire``): the fallback should
a Twisted release break those, and the reference they are measured and tested against.
The channel is :class:`StockChannel`, which overrides one public method,
``checkPersistence``, so that no request keeps its connection open while the server
drains.

Around each channel sits a :class:`StockConnection`, a ``ProtocolWrapper`` (public
Twisted API, as is everything here) that

* is what the site's :class:`~installsure.http.connections.ConnectionTracker` tracks:
  it leaves the tracker when the connection goes or a WebSocket upgrade takes it over,
  notes when bytes last went in or out, and drains its channel on shutdown. Bytes the
  client sends while a request is handled (a pipelined request) keep the connection
  open for that request; twisted.web keeps them where only its internals can see, so
  a pipelined request that came in the same read as the one before it is not noticed,
  and may be cut when the connection closes after that one's answer;
* minds the deadlines of a request being read (:mod:`installsure.http.deadlines`),
  from what twisted.web shows of it: the channel's ``requests``, a request's
  ``content`` (set once its head is in) and ``path`` (set once all of it is in), and
  :func:`stock_request`, the site's request factory, which counts the requests begun;
* answers a request that misses its deadline with a 408 in the envelope
  (:func:`installsure.http.refusal.refuse`). twisted.web parks the request line where
  only its internals can read it, so that answer's access line has no method or path.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import HTTPChannel
from zope.interface import directlyProvides, providedBy

from installsure.http.connections import ConnectionTracker, socket_has_bytes
from installsure.http.deadlines import Progress, ReadDeadline, Reading
from installsure.http.incoming import BodyStream, StreamingRequest
from installsure.http.refusal import Refusal, RefusedRequest, WireHooks, refuse, send_and_close


class StockChannel(HTTPChannel):
    """twisted.web's ``HTTPChannel``; while the server drains (``draining``), no request
    keeps its connection open, and each response says so."""

    draining = False

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        if self.draining:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return bool(super().checkPersistence(request, version))  # type: ignore[no-untyped-call]


def stock_request(channel: HTTPChannel, queued: Any = False) -> server.Request:
    """A ``server.Request`` (a :class:`~installsure.http.incoming.StreamingRequest`, so
    streamed routes get their body as it arrives), built as HTTPChannel builds one (with
    the deprecated ``queued`` it always passes), counted by the connection it arrives on."""
    request = StreamingRequest(channel, queued)  # type: ignore[no-untyped-call]
    connection: object = channel.transport
    if isinstance(connection, StockConnection):
        connection.begun += 1
        connection.read_ahead = False
    return request


class StockConnection(ProtocolWrapper):
    """One connection of the stock wire: relays everything to its ``HTTPChannel``.

    A ``ProtocolWrapper`` registers with the ``WrappingFactory`` that made it; this one
    is made by the site and reports to the site's connection tracker instead.
    """

    #: Requests begun on this connection (see :func:`stock_request`).
    begun = 0
    #: Bytes came in while a request was handled, since the last request began.
    read_ahead = False
    _last_active = 0.0
    _upgrade_seen = False

    def __init__(
        self, channel: StockChannel, connections: ConnectionTracker, hooks: WireHooks
    ) -> None:
        super().__init__(cast("WrappingFactory[StockConnection]", None), channel)
        #: The HTTP channel, even after a WebSocket upgrade has replaced
        #: ``wrappedProtocol`` (autobahn does that to a ProtocolWrapper).
        self.channel = channel
        self.connections = connections
        self.hooks = hooks
        self._deadline: ReadDeadline | None = None
        #: A read went into a request line without beginning a request.
        self._line_begun = False
        self._refused = False
        self._linger: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:
        # ProtocolWrapper.makeConnection without its factory's registerProtocol: the
        # site has added the channel to its tracker already.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)  # type: ignore[no-untyped-call]
        # A ProtocolWrapper is its wrapped protocol's transport (it provides what the
        # real transport provides, see directlyProvides above).
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]

    @property
    def upgraded(self) -> bool:
        """Whether the connection speaks something else now (a WebSocket)."""
        wrapped: object = self.wrappedProtocol
        return wrapped is not self.channel

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # an answer is out and the connection closing: discard the rest
        self._last_active = self.connections.clock.seconds()
        if self._handling():
            self.read_ahead = True
        begun = self.begun
        self.wrappedProtocol.dataReceived(data)
        if self.upgraded:
            if not self._upgrade_seen:
                self._upgrade_seen = True
                self._stop_clocks()
                self.connections.upgraded(self)
            return
        # Bytes that began no request and left none in progress are a request line
        # still coming. (When a request began in this read, what may follow it is not
        # visible: its clock starts with the next read.)
        self._line_begun = not self.channel.requests and self.begun == begun
        if self.hooks.deadlines is None:
            return
        if self._deadline is None:
            if self._progress() is None:
                return
            self._deadline = ReadDeadline(
                self.hooks.deadlines, self.channel.callLater, self._progress, self._too_slow
            )
        self._deadline.observe()

    def _progress(self) -> Progress:
        if self._refused or self.upgraded:
            return None
        requests = self.channel.requests
        if not requests:
            return (Reading.HEAD, 0, self.begun + 1) if self._line_begun else None
        request = requests[-1]
        if request.content is None:  # set by gotLength, once the head is in
            return Reading.HEAD, 0, self.begun
        content = request.content
        # path is set by requestReceived, once the body is in; a streamed body (already
        # dispatched, see installsure.http.incoming) is still read until it ends.
        if request.path is None or (isinstance(content, BodyStream) and not content.ended):
            return Reading.BODY, content.tell(), self.begun
        return None  # being handled

    def _handling(self) -> bool:
        """A request is in, being handled (``path`` is set once all of it is read)."""
        requests = self.channel.requests
        return bool(requests) and requests[-1].path is not None

    def _too_slow(self, reading: Reading) -> None:
        deadlines = self.hooks.deadlines
        assert deadlines is not None  # noqa: S101 - only watched with deadlines
        self._refuse(deadlines.refusal(reading))

    def _refuse(self, refusal: Refusal) -> None:
        self._refused = True
        requests = self.channel.requests
        sent = None
        if requests:
            values = requests[-1].requestHeaders.getRawHeaders(self.hooks.request_id_header)
            sent = values[0] if values else None
        refused = RefusedRequest(
            method=b"", path=b"", version=None, sent_request_id=sent,
            remote=str(getattr(self.transport.getPeer(), "host", "-")),  # type: ignore[union-attr]
        )
        self._linger = refuse(self.hooks, refusal, refused, self.transport,
                              self.channel.callLater)

    def close_after_answer(self) -> None:
        """The answer to a request whose body is still arriving has gone out (an upload
        refused part-way): drop whatever else the client sends and close, lingering so
        the client can read the answer (see :mod:`installsure.http.incoming`)."""
        if self._refused:
            return
        self._refused = True
        self._linger = send_and_close(self.transport, b"", self.channel.callLater)

    # -- writing: noted for the drain ----------------------------------------------------

    def write(self, data: bytes) -> None:
        self._last_active = self.connections.clock.seconds()
        super().write(data)  # type: ignore[no-untyped-call]

    def writeSequence(self, data: Any) -> None:
        self._last_active = self.connections.clock.seconds()
        super().writeSequence(data)  # type: ignore[no-untyped-call]

    # -- draining on shutdown (installsure.http.connections) -----------------------------

    def begin_drain(self) -> None:
        channel = self.channel
        channel.draining = True
        if self.upgraded or self.read_ahead or not channel.requests:
            return
        request = channel.requests[-1]
        # content is set once the head is in, when persistence has been decided.
        if request.content is not None and not request.startedWriting:
            channel.persistent = False
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])

    def is_idle(self) -> bool:
        return not (self.channel.requests or self._line_begun or self._refused
                    or self.upgraded)

    def last_active(self) -> float:
        return self._last_active

    def bytes_waiting(self) -> bool:
        return socket_has_bytes(self.transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def cut(self, refusal: Refusal) -> None:
        if self._refused or self.transport is None:
            return
        if self._progress() is not None:
            self._refuse(refusal)
        else:
            self.transport.loseConnection()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _stop_clocks(self) -> None:
        if self._deadline is not None:
            self._deadline.stop()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_clocks()
        self.connections.discard(self)
        self.wrappedProtocol.connectionLost(reason)
