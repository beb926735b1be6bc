"""The WebSocket side of ``/ws``: subprotocol choice, serializers, a bounded outbound queue.

One :class:`RealtimeProtocol` per connection. The client's first supported offer among
``wamp.2.json``, ``wamp.2.msgpack``, ``wamp.2.cbor`` (and their ``.batched`` forms)
picks the serializer of a :class:`~installsure.realtime.wamp.WampSession`; no offer at
all gets the plain JSON protocol (:mod:`installsure.realtime.plain`).

Slow consumers: the protocol is the transport's push producer, so Twisted tells it when
the socket's buffer is full (``pauseProducing``). From then on messages wait in a queue
of at most ``outbound_max_messages`` / ``outbound_max_bytes``; a client that lets it
overflow is disconnected, logged and counted, and memory stays bounded whatever it does.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.wamp.exception import ProtocolError
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure._compat import websocket_close
from installsure.realtime.authn import Gatekeeper
from installsure.realtime.broker import Broker
from installsure.realtime.publication import OutgoingEvent
from installsure.realtime.settings import RealtimeSettings

log = Logger(namespace="installsure.realtime.websocket")

# autobahn's serializers and protocols need txaio told which framework runs them.
txaio.use_twisted()

#: Subprotocol -> serializer, one shared instance each: autobahn caches a message's
#: bytes per serializer instance, so an EVENT shared by many sessions is encoded once.
SERIALIZERS: dict[str, Any] = {
    "wamp.2.json": JsonSerializer(),
    "wamp.2.json.batched": JsonSerializer(batched=True),
    "wamp.2.msgpack": MsgPackSerializer(),
    "wamp.2.msgpack.batched": MsgPackSerializer(batched=True),
    "wamp.2.cbor": CBORSerializer(),
    "wamp.2.cbor.batched": CBORSerializer(batched=True),
}
SUBPROTOCOLS = tuple(SERIALIZERS)


def origin_patterns(origins: tuple[str, ...]) -> list[str]:
    """autobahn matches ``scheme://host:port``: an origin written without its port (as
    CORS allowlists are) gets its scheme's default one."""
    patterns = []
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        default = {"https": 443, "http": 80}.get(scheme.lower())
        if rest and default is not None and ":" not in rest.rsplit("]", 1)[-1]:
            patterns.append(f"{origin}:{default}")
        else:
            patterns.append(origin)
    return patterns


class RealtimeProtocol(WebSocketServerProtocol):
    factory: RealtimeFactory
    peer: str  # set by autobahn when the connection is made
    session: Any = None
    subprotocol: str | None = None
    _serializer: Any = None
    _paused = False
    _queue: deque[tuple[Any, int]] | None = None
    _queued_bytes = 0
    #: No extension (permessage-deflate) in use: prepared frames go out as they are.
    _raw_frames = False

    # -- opening handshake -----------------------------------------------------------

    def onConnect(self, request: Any) -> str | None:
        for offered in request.protocols:
            if offered in SERIALIZERS:
                chosen = str(offered)
                self.subprotocol = chosen
                self._serializer = SERIALIZERS[chosen]
                return chosen
        # No (known) WAMP subprotocol: the plain JSON protocol, without a header.
        return None

    def onOpen(self) -> None:
        factory = self.factory
        # Ours from now on: the transport tells us when its buffer fills up.
        self.registerProducer(self, True)
        self._raw_frames = not self.websocket_extensions_in_use
        info = {"type": "websocket", "protocol": self.subprotocol or "plain-json",
                "peer": self.peer}
        if self.subprotocol is not None:
            from installsure.realtime.wamp import WampSession

            self.session = WampSession(
                factory.broker, factory.gatekeeper, self, factory.reactor,
                hello_timeout=factory.settings.hello_timeout,
                close_timeout=factory.settings.close_handshake_timeout,
                max_subscriptions=factory.settings.max_subscriptions_per_session,
                transport_info=info,
            )
        else:
            from installsure.realtime.plain import PlainSession

            self.session = PlainSession(
                factory.broker, factory.gatekeeper, self, factory.reactor,
                hello_timeout=factory.settings.hello_timeout,
                max_subscriptions=factory.settings.max_subscriptions_per_session,
                transport_info=info,
            )
        factory.opened(self)
        self.session.opened()

    # -- reading -----------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None or session.closed:
            return
        if self._serializer is None:
            session.received_text(payload, isBinary)
            return
        try:
            messages = self._serializer.unserialize(payload, isBinary)
        except ProtocolError as e:
            session.violation(str(e))
            return
        except Exception as e:  # a serializer choking on hostile bytes is still their fault
            session.violation(f"invalid message: {type(e).__name__}")
            return
        session.received(messages)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._queue = None
        if self.session is not None:
            self.session.connection_lost()
        self.factory.closed(self)

    # -- writing (the Channel of the sessions) -------------------------------------------

    def send_message(self, message: Any) -> None:
        if self._serializer is None:  # the plain protocol hands ready bytes
            self._write((message, False), len(message))
            return
        payload, binary = self._serializer.serialize(message)
        self._write((payload, binary), len(payload))

    def send_event(self, event: OutgoingEvent) -> None:
        serializer = self._serializer
        if serializer is None:
            frame = event.publication.plain_frame()
            self._write((frame, False), len(frame))
            return
        key = self.subprotocol or ""
        prepared = event.frames.get(key)
        if prepared is None:
            payload, binary = serializer.serialize(event.message)
            prepared = self.factory.prepareMessage(payload, binary)
            prepared.size = len(payload)
            event.frames[key] = prepared
        if (self._raw_frames and not self._paused and not self._queue
                and self.state == self.STATE_OPEN and not self.send_queue):
            # The hot path of every delivery: the frame bytes framed once for all
            # subscribers, straight to the socket (autobahn's sendData would format
            # a debug line for each).
            self.factory.broker.stats.bytes_out += prepared.size
            transport: Any = self.transport
            transport.write(prepared.payloadHybi)
            return
        self._write(prepared, prepared.size)

    def close(self, code: int, reason: str) -> None:
        if self.state == self.STATE_OPEN:
            websocket_close(self, code, reason)

    def abort(self) -> None:
        if self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)

    def _write(self, item: Any, size: int) -> None:
        if self.state != self.STATE_OPEN:
            self.factory.broker.stats.drop("closed")
            return
        if not self._paused and not self._queue:
            self._emit(item, size)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append((item, size))
        self._queued_bytes += size
        settings = self.factory.settings
        if len(queue) > settings.outbound_max_messages or (
                self._queued_bytes > settings.outbound_max_bytes):
            self._slow_consumer(len(queue), self._queued_bytes)

    def _emit(self, item: Any, size: int) -> None:
        self.factory.broker.stats.bytes_out += size
        if isinstance(item, tuple):
            self.sendMessage(item[0], item[1])  # type: ignore[no-untyped-call]
        elif self._raw_frames and not self.send_queue:
            transport: Any = self.transport
            transport.write(item.payloadHybi)
        else:
            self.sendPreparedMessage(item)

    def _slow_consumer(self, messages: int, size: int) -> None:
        stats = self.factory.broker.stats
        stats.slow_consumer_disconnects += 1
        stats.drop("slow_consumer", messages)
        session = self.session
        log.warn(
            "disconnecting session {session} of {authid} from {peer}: slow consumer, "
            "{messages} messages ({size} bytes) waiting beyond the socket buffer",
            session=getattr(session, "session_id", None),
            authid=getattr(session, "authid", None), peer=self.peer, messages=messages,
            size=size,
        )
        self._queue = None
        self._queued_bytes = 0
        self.dropConnection(abort=True)

    # -- IPushProducer: the transport's buffer --------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        queue = self._queue
        while queue and not self._paused and self.state == self.STATE_OPEN:
            item, size = queue.popleft()
            self._queued_bytes -= size
            self._emit(item, size)
        if queue is not None and not queue:
            self._queue = None  # idle sessions keep no deque
            self._queued_bytes = 0

    def stopProducing(self) -> None:
        self._queue = None


class RealtimeFactory(WebSocketServerFactory):
    """Makes :class:`RealtimeProtocol`; ``connections`` are the open ones (for a drain)."""

    protocol = RealtimeProtocol  # type: ignore[assignment]

    def __init__(
        self,
        broker: Broker,
        gatekeeper: Gatekeeper,
        settings: RealtimeSettings,
        reactor: IReactorTime,
        *,
        allowed_origins: tuple[str, ...] = (),
        url: str | None = None,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            url, protocols=list(SUBPROTOCOLS), server="installsure")
        self.broker = broker
        self.gatekeeper = gatekeeper
        self.settings = settings
        self.reactor = reactor
        self.connections: set[RealtimeProtocol] = set()
        options: dict[str, Any] = {
            "autoPingInterval": float(settings.auto_ping_interval),
            "autoPingTimeout": float(settings.auto_ping_timeout),
            "maxMessagePayloadSize": settings.max_message_size,
            "maxFramePayloadSize": settings.max_frame_size,
            "openHandshakeTimeout": float(settings.open_handshake_timeout),
            "closeHandshakeTimeout": float(settings.close_handshake_timeout),
            "maxConnections": settings.max_connections,
            # A browser page whose origin is not on the CORS allowlist is refused;
            # clients that send no Origin (apps, services) are not browsers and pass.
            "allowedOrigins": origin_patterns(allowed_origins),
            "allowNullOrigin": False,
            # A client that breaks the WebSocket protocol (or sends too big a message)
            # gets a close frame with the reason's code, not just a dropped connection.
            "failByDrop": False,
        }
        if settings.permessage_deflate:
            options["perMessageCompressionAccept"] = self._accept_deflate
        self.setProtocolOptions(**options)  # type: ignore[no-untyped-call]
        self.noisy = False

    def _accept_deflate(self, offers: list[Any]) -> Any:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                bits = self.settings.deflate_window_bits
                if offer.request_max_window_bits:  # the client asked for at most this
                    bits = min(bits, offer.request_max_window_bits)
                return PerMessageDeflateOfferAccept(
                    offer, window_bits=bits, mem_level=self.settings.deflate_mem_level,
                    request_max_window_bits=bits if offer.accept_max_window_bits else 0,
                )
        return None

    def opened(self, protocol: RealtimeProtocol) -> None:
        self.connections.add(protocol)

    def closed(self, protocol: RealtimeProtocol) -> None:
        self.connections.discard(protocol)
