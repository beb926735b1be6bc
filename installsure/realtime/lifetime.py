"""What both session kinds (WAMP and plain JSON) share: the channel they write to,
the deadline for authenticating, the token's expiry, and closing gently.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from installsure.realtime.authn import Identity
from installsure.realtime.authorizer import SessionAuthorizer
from installsure.realtime.publication import OutgoingEvent

#: WebSocket close codes.
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008

SYSTEM_SHUTDOWN = "wamp.close.system_shutdown"
EXPIRED = "wamp.close.expired"
REVOKED = "installsure.close.revoked"


class Channel(Protocol):
    """The connection a session writes to (the WebSocket protocol, or a test double)."""

    peer: str

    def send_message(self, message: Any) -> None:
        """Serialize a WAMP message (or, plain protocol: a JSON-able dict) and send it."""
        ...

    def send_event(self, event: OutgoingEvent) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None: ...


class SessionLifetime:
    """Timers and close bookkeeping of one session."""

    session_id: int
    authid: str
    authrole: str
    authmethod: str
    authorizer: SessionAuthorizer | None

    def __init__(self, reactor: IReactorTime, channel: Channel, transport_info: dict[str, Any]):
        self.reactor = reactor
        self.channel = channel
        self.transport_info = transport_info
        self.authid = ""
        self.authrole = ""
        self.authmethod = ""
        self.authorizer = None
        self.identity: Identity | None = None
        self.closed = False
        self._closed_waiters: list[Deferred[None]] = []
        self._timers: dict[str, IDelayedCall] = {}

    # -- timers -------------------------------------------------------------------------

    def start_timer(self, name: str, seconds: float, fn: Any, *args: Any) -> None:
        self.cancel_timer(name)
        self._timers[name] = self.reactor.callLater(max(0.0, seconds), self._fire, name, fn,
                                                    *args)

    def _fire(self, name: str, fn: Any, *args: Any) -> None:
        self._timers.pop(name, None)
        fn(*args)

    def cancel_timer(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def watch_expiry(self, identity: Identity) -> None:
        """End the session when its token expires (unless re-authenticated before)."""
        if identity.expires_at is not None:
            left = identity.expires_at - self.reactor.seconds()
            self.start_timer("expiry", left, self.expired)
        else:
            self.cancel_timer("expiry")

    def expired(self) -> None:
        raise NotImplementedError

    # -- closing ------------------------------------------------------------------------

    def when_closed(self) -> Deferred[None]:
        if self.closed:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        return d

    def connection_lost(self) -> None:
        """The transport is gone (whoever closed it)."""
        if self.closed:
            return
        self.closed = True
        for name in list(self._timers):
            self.cancel_timer(name)
        self.left()
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)

    def left(self) -> None:
        """Leave the broker (the session kinds do that their own way)."""
