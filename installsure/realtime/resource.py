"""``/ws`` as a twisted.web resource: the HTTP request that asks for a WebSocket hands its
connection over to a :class:`~installsure.realtime.websocket.RealtimeProtocol`.

So WebSocket clients use the same listener (and port, TLS, proxy) as the HTTP API. The
handover: the new protocol takes the transport's place, the HTTP channel is told its
connection is gone (which stops its timers and removes it from the site's connection
tracker, so an HTTP drain does not wait for WebSocket sessions: the realtime drain
closes those), and the request's head is replayed to autobahn, which does the opening
handshake (origin, subprotocols, extensions, connection limit) itself.

Anything else than a WebSocket upgrade gets ``426`` with the API's error envelope.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from installsure.realtime.websocket import SUBPROTOCOLS, RealtimeFactory


def _request_id(request: Any) -> str:
    hooks = getattr(getattr(request, "site", None), "wire_hooks", None)
    if hooks is not None:
        sent = request.requestHeaders.getRawHeaders(hooks.request_id_header)
        return str(hooks.request_id(sent[0] if sent else None))
    return str(uuid.uuid4())


def _refuse(request: Any, status: int, code: str, message: str) -> bytes:
    request_id = _request_id(request)
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"X-Request-ID", request_id.encode("ascii", "replace"))
    if status == 426:
        request.setHeader(b"Upgrade", b"websocket")
        request.setHeader(b"Sec-WebSocket-Protocol", ", ".join(SUBPROTOCOLS).encode("ascii"))
    body = {"success": False, "error": message, "code": code, "requestId": request_id}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _replayed_head(request: Any) -> bytes:
    lines = [request.method + b" " + request.uri + b" HTTP/1.1"]
    for name, values in request.requestHeaders.getAllRawHeaders():
        lines.append(name + b": " + b", ".join(values))
    return b"\r\n".join(lines) + b"\r\n\r\n"


@implementer(IResource)
class WebSocketEndpoint:
    isLeaf = True

    def __init__(self, factory: RealtimeFactory) -> None:
        self.factory = factory

    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the WebSocket endpoint has no children")

    def render(self, request: Any) -> bytes | int:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        channel = request.channel
        transport = getattr(channel, "transport", None)
        if request.method != b"GET" or upgrade != b"websocket" or transport is None:
            return _refuse(request, 426, "UPGRADE_REQUIRED",
                           "/ws speaks WebSocket: open it with a WebSocket client "
                           "(WAMP subprotocols wamp.2.json, wamp.2.msgpack, wamp.2.cbor, "
                           "or none for the plain JSON protocol)")
        protocol: Any = self.factory.buildProtocol(transport.getPeer())
        head = _replayed_head(request)
        # The HTTP channel is the transport's producer; the WebSocket registers itself.
        transport.unregisterProducer()
        if isinstance(transport, ProtocolWrapper):  # the stock wire's connection guard, TLS
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        channel.transport = None
        upgraded = Failure(ConnectionDone("the connection speaks WebSocket now"))  # type: ignore[no-untyped-call]
        channel.connectionLost(upgraded)
        protocol.makeConnection(transport)
        resume = getattr(transport, "resumeProducing", None)
        if resume is not None:  # HTTP may have paused reading while the request was served
            resume()
        protocol.dataReceived(head)
        return NOT_DONE_YET
