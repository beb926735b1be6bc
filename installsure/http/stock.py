"""The stock HTTP wire (``http.wire = "stock"``): twisted.web's own HTTP/1.1, guarded.

Each connection is served by twisted.web's plain ``HTTPChannel`` and ``server.Request``,
with none of the fast wire's shortcuts (``installsure.http._wire``): the fallback should
a Twisted release break those, and the reference they are measured and tested against.

Around each channel sits a :class:`StockConnection`, a ``ProtocolWrapper`` (public
Twisted API, as is everything here) that

* tells the site's :class:`~installsure.http.connections.ConnectionTracker` when the
  connection goes;
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

from installsure.http.connections import ConnectionTracker
from installsure.http.deadlines import Progress, ReadDeadline, Reading
from installsure.http.incoming import StreamingRequest
from installsure.http.refusal import RefusedRequest, WireHooks, refuse, send_and_close


def stock_request(channel: HTTPChannel, queued: Any = False) -> server.Request:
    """A ``server.Request`` (a :class:`~installsure.http.incoming.StreamingRequest`, so
    streamed routes get their body as it arrives), built as HTTPChannel builds one (with
    the deprecated ``queued`` it always passes), counted by the connection it arrives on."""
    request = StreamingRequest(channel, queued)  # type: ignore[no-untyped-call]
    connection: object = channel.transport
    if isinstance(connection, StockConnection):
        connection.begun += 1
    return request


class StockConnection(ProtocolWrapper):
    """One connection of the stock wire: relays everything to its ``HTTPChannel``.

    A ``ProtocolWrapper`` registers with the ``WrappingFactory`` that made it; this one
    is made by the site and reports to the site's connection tracker instead.
    """

    #: Requests begun on this connection (see :func:`stock_request`).
    begun = 0

    def __init__(
        self, channel: HTTPChannel, connections: ConnectionTracker, hooks: WireHooks
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
        begun = self.begun
        self.wrappedProtocol.dataReceived(data)
        if self.upgraded or self.hooks.deadlines is None:
            return
        # Bytes that began no request and left none in progress are a request line
        # still coming. (When a request began in this read, what may follow it is not
        # visible: its clock starts with the next read.)
        self._line_begun = not self.channel.requests and self.begun == begun
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
        if request.path is None:  # set by requestReceived, once the body is in
            return Reading.BODY, request.content.tell(), self.begun
        return None  # being handled

    def _too_slow(self, reading: Reading) -> None:
        deadlines = self.hooks.deadlines
        assert deadlines is not None  # noqa: S101 - only watched with deadlines
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
        self._linger = refuse(
            self.hooks, deadlines.refusal(reading), refused, self.transport,
            self.channel.callLater,
        )

    def close_after_answer(self) -> None:
        """The answer to a request whose body is still arriving has gone out (an upload
        refused part-way): drop whatever else the client sends and close, lingering so
        the client can read the answer (see :mod:`installsure.http.incoming`)."""
        if self._refused:
            return
        self._refused = True
        self._linger = send_and_close(self.transport, b"", self.channel.callLater)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._deadline is not None:
            self._deadline.stop()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self.connections.discard(self.channel)
        self.wrappedProtocol.connectionLost(reason)
