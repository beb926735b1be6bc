"""The stock HTTP wire (``http.wire = "stock"``): twisted.web's own HTTP/1.1, guarded.

Each connection is served by twisted.web's plain ``HTTPChannel`` and ``server.Request``,
with none of the fast wire's shortcuts (``installsure.http._wire``): the fallback should
a Twisted release break those, and the reference they are measured and tested against.

Around each channel sits a :class:`StockConnection`, a ``ProtocolWrapper`` (public
Twisted API, as is everything here) that tells the site's
:class:`~installsure.http.connections.ConnectionTracker` when the connection goes.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from zope.interface import directlyProvides, providedBy

from installsure.http.connections import ConnectionTracker


class StockConnection(ProtocolWrapper):
    """One connection of the stock wire: relays everything to its ``HTTPChannel``.

    A ``ProtocolWrapper`` registers with the ``WrappingFactory`` that made it; this one
    is made by the site and reports to the site's connection tracker instead.
    """

    def __init__(self, channel: HTTPChannel, connections: ConnectionTracker) -> None:
        super().__init__(cast("WrappingFactory[StockConnection]", None), channel)
        #: The HTTP channel, even after a WebSocket upgrade has replaced
        #: ``wrappedProtocol`` (autobahn does that to a ProtocolWrapper).
        self.channel = channel
        self.connections = connections

    def makeConnection(self, transport: Any) -> None:
        # ProtocolWrapper.makeConnection without its factory's registerProtocol: the
        # site has added the channel to its tracker already.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)  # type: ignore[no-untyped-call]
        # A ProtocolWrapper is its wrapped protocol's transport (it provides what the
        # real transport provides, see directlyProvides above).
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connections.discard(self.channel)
        self.wrappedProtocol.connectionLost(reason)
