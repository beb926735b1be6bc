"""Shared parts of the realtime tests: signed test tokens, a membership table, a server
listening on a real socket, and autobahn clients that record what they receive."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import txaio

txaio.use_twisted()

from autobahn.twisted.wamp import ApplicationSession  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WampWebSocketClientFactory,
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from autobahn.wamp.types import ComponentConfig  # noqa: E402
from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.defer import Deferred, fail, succeed  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402

from installsure.auth.interfaces import AuthenticationError  # noqa: E402
from installsure.auth.principal import Principal  # noqa: E402
from installsure.http.factory import build_site  # noqa: E402
from installsure.http.routing import Router  # noqa: E402
from installsure.http.settings import HttpSettings  # noqa: E402
from installsure.realtime.service import RealtimeService  # noqa: E402
from installsure.realtime.settings import RealtimeSettings  # noqa: E402

SECRET = b"test-secret-for-realtime-tokens-0123456789"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_token(user_id: str, role: str = "member", *, session_id: str = "s1",
               ttl: float = 900.0, secret: bytes = SECRET) -> str:
    """An HS256 JWT (signed with the standard library) carrying a user, role, login
    session and expiry."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": user_id, "role": role, "sid": session_id,
                              "exp": time.time() + ttl}).encode())
    signature = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


class SignedTokenVerifier:
    """Checks the signature and expiry of :func:`make_token`'s tokens, and a set of
    revoked login sessions (as the real verifier checks Redis)."""

    def __init__(self, secret: bytes = SECRET) -> None:
        self.secret = secret
        self.revoked: set[str] = set()

    def verify(self, token: str) -> Deferred[Principal]:
        header, _, rest = token.partition(".")
        claims, _, signature = rest.partition(".")
        expected = _b64(hmac.new(self.secret, f"{header}.{claims}".encode(),
                                 hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return fail(AuthenticationError("invalid or expired token"))
        body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        if body["exp"] < time.time():
            return fail(AuthenticationError("invalid or expired token"))
        if body["sid"] in self.revoked:
            return fail(AuthenticationError("invalid or expired token"))
        return succeed(Principal(body["sub"], body["role"], session_id=body["sid"]))


class Memberships:
    """project id -> {user id: project role}; files belong to projects. Answers as
    auth's ProjectAccess does: members, admins and managers see a project."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, str]] = {}
        self.files: dict[str, str] = {}
        self.asked = 0

    def project_role(self, principal: Principal, project_id: str) -> Deferred[str | None]:
        return succeed(self.members.get(project_id, {}).get(principal.id))

    def may_subscribe(self, principal: Principal, topic: str) -> Deferred[bool]:
        self.asked += 1
        parts = topic.split(".")
        if len(parts) < 3 or parts[0] != "installsure" or not parts[2]:
            return succeed(False)
        if parts[1] == "project":
            project: str | None = parts[2]
        elif parts[1] == "file":
            project = self.files.get(parts[2])
        else:
            return succeed(False)
        if principal.role in ("admin", "manager"):
            return succeed(True)
        return succeed(project is not None
                       and principal.id in self.members.get(project, {}))


def realtime_service(redis: Any, *, verifier: Any = None, access: Any = None,
                     allowed_origins: tuple[str, ...] = (), **settings: Any) -> RealtimeService:
    settings.setdefault("auto_ping_interval", 0)
    return RealtimeService(
        RealtimeSettings(**settings), redis, verifier or SignedTokenVerifier(),
        access or Memberships(), reactor, allowed_origins=allowed_origins,
    )


def site_for(service: RealtimeService, wire: str = "fast") -> Any:
    """The real HTTP API site with ``/ws`` mounted, as the process builds it."""
    return build_site(Router(), HttpSettings(wire=wire), mounts={b"ws": service.resource})


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    return d


async def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await sleep(0.01)


class Client(ApplicationSession):
    """A WAMP client session that authenticates with a ticket and records events."""

    def __init__(self, config: ComponentConfig, ticket: str | None) -> None:
        super().__init__(config)
        self.ticket = ticket
        self.joined: Deferred[Any] = Deferred()
        self.left: Deferred[Any] = Deferred()
        self.events: list[tuple[str | None, list[Any], dict[str, Any], Any]] = []
        self.goodbye: Any = None

    def onConnect(self) -> None:
        methods = ["ticket"] if self.ticket is not None else ["anonymous"]
        self.join(self.config.realm, authmethods=methods)

    def onChallenge(self, challenge: Any) -> str:
        assert challenge.method == "ticket"
        return self.ticket or ""

    def onJoin(self, details: Any) -> None:
        self.welcome = details
        if not self.joined.called:
            self.joined.callback(details)

    def onLeave(self, details: Any) -> None:
        self.goodbye = details
        if not self.joined.called:
            self.joined.errback(RuntimeError(f"{details.reason}: {details.message}"))
        if not self.left.called:
            self.left.callback(details)
        # The router closes the WebSocket itself after GOODBYE (with 1001 on shutdown).

    def details_role(self) -> str:
        return str(self.welcome.authrole)

    def record(self, *args: Any, **kwargs: Any) -> None:
        details = kwargs.pop("details", None)
        self.events.append((getattr(details, "topic", None), list(args), kwargs, details))


async def connect(port: int, ticket: str | None, *, serializer: str = "json",
                  realm: str = "installsure") -> Client:
    """An autobahn|Python client over a real socket; returns once joined (or raises)."""
    from autobahn.wamp import serializer as ser

    choices = {
        "json": ser.JsonSerializer(), "json.batched": ser.JsonSerializer(batched=True),
        "msgpack": ser.MsgPackSerializer(),
        "msgpack.batched": ser.MsgPackSerializer(batched=True),
        "cbor": ser.CBORSerializer(), "cbor.batched": ser.CBORSerializer(batched=True),
    }
    session = Client(ComponentConfig(realm), ticket)
    factory = WampWebSocketClientFactory(lambda: session, url=f"ws://127.0.0.1:{port}/ws",
                                         serializers=[choices[serializer]])
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoint.connect(factory)
    await session.joined
    return session


class PlainClient(WebSocketClientProtocol):
    """A WebSocket client offering no subprotocol, for the plain JSON protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.closed.called:
            self.closed.callback((code, reason))

    def send(self, message: dict[str, Any]) -> None:
        self.sendMessage(json.dumps(message).encode())

    async def next(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The first received message of ``kind`` (removed from ``received``)."""
        def find() -> dict[str, Any] | None:
            for message in self.received:
                if message.get("type") == kind:
                    self.received.remove(message)
                    return message
            return None

        return await wait_for(find, timeout)  # type: ignore[no-any-return]


async def connect_plain(port: int, *, headers: dict[str, str] | None = None,
                        protocols: list[str] | None = None,
                        client: type[PlainClient] | None = None) -> PlainClient:
    """A WebSocket client on /ws, offering ``protocols`` (none: the plain protocol);
    returns once open, or raises with the handshake's failure."""
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", headers=headers,
                                     protocols=protocols)
    factory.protocol = client or PlainClient
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    protocol: PlainClient = await endpoint.connect(factory)
    opened_or_closed = defer.DeferredList([protocol.opened, protocol.closed],
                                          fireOnOneCallback=True, consumeErrors=True)
    await opened_or_closed
    if not protocol.opened.called:
        code, reason = protocol.closed.result
        raise ConnectionError(f"WebSocket not opened: {code} {reason}")
    return protocol


class RawClient(PlainClient):
    """Records raw payloads instead of parsing them (for WAMP subprotocols)."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.raw.append(payload)

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []


def gather(*ds: Deferred[Any]) -> Deferred[list[Any]]:
    return defer.gatherResults(list(ds))
