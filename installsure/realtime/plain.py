"""The plain JSON protocol on ``/ws``, for clients that offer no WAMP subprotocol.

Client to server (one JSON object per text message)::

    {"type": "auth", "token": "<access token>"}          first, and again to renew
    {"type": "subscribe", "topic": "...", "match": "exact"|"prefix"|"wildcard"}
    {"type": "unsubscribe", "topic": "...", "match": ...}
    {"type": "ping"}

Server to client: ``welcome``, ``subscribed``, ``unsubscribed``, ``event``
(``{"type": "event", "topic", "payload", "timestamp"}``), ``error`` (``{"type":
"error", "code", "error"}``, and ``topic`` when it concerns one), ``pong``, and
``goodbye`` (``reason``) before the server closes. The same broker, authentication
and authorization as WAMP: a plain session is a broker peer like any other. Retained
events are sent right after ``subscribed``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.realtime.authn import Gatekeeper, Identity
from installsure.realtime.broker import Broker
from installsure.realtime.lifetime import (
    EXPIRED,
    GOING_AWAY,
    NORMAL_CLOSURE,
    POLICY_VIOLATION,
    SYSTEM_SHUTDOWN,
    Channel,
    SessionLifetime,
)
from installsure.realtime.principal import AuthenticationError
from installsure.realtime.publication import OutgoingEvent
from installsure.realtime.subscriptions import Subscription
from installsure.realtime.uris import MATCH_POLICIES

log = Logger(namespace="installsure.realtime.plain")

#: Longest topic URI accepted.
MAX_TOPIC = 512


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")


class PlainSession(SessionLifetime):
    def __init__(
        self,
        broker: Broker,
        gatekeeper: Gatekeeper,
        channel: Channel,
        reactor: IReactorTime,
        *,
        hello_timeout: float = 10.0,
        max_subscriptions: int = 1000,
        transport_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reactor, channel, transport_info or {})
        self.broker = broker
        self.gatekeeper = gatekeeper
        self.hello_timeout = hello_timeout
        self.max_subscriptions = max_subscriptions
        self.session_id = broker.new_session_id()
        self._joined = False
        self._verifying = False
        #: (topic, match) -> subscription, since this protocol names topics, not ids
        self._subscriptions: dict[tuple[str, str], Subscription] = {}

    # -- Peer ----------------------------------------------------------------------------

    def deliver(self, event: OutgoingEvent) -> None:
        if not self.closed:
            self.channel.send_event(event)

    def revoke(self, subscription: Subscription, reason: str) -> None:
        self._subscriptions.pop((subscription.uri, subscription.match), None)
        self._send({"type": "unsubscribed", "topic": subscription.uri,
                    "match": subscription.match, "reason": reason})

    def details(self) -> dict[str, Any]:
        return {"session": self.session_id, "authid": self.authid, "authrole": self.authrole,
                "authmethod": self.authmethod, "authprovider": "installsure",
                "transport": self.transport_info}

    def close(self, reason: str, message: str) -> Any:
        if not self.closed:
            self._send({"type": "goodbye", "reason": reason, "message": message})
            self.channel.close(GOING_AWAY if reason == SYSTEM_SHUTDOWN else NORMAL_CLOSURE,
                               reason)
            self.start_timer("abort", 2.0, self.channel.abort)
        return self.when_closed()

    def expired(self) -> None:
        self.close(EXPIRED, "the access token expired; send a new one with auth")

    def left(self) -> None:
        if self._joined:
            self._joined = False
            self.broker.leave(self)

    # -- channel -------------------------------------------------------------------------

    def opened(self) -> None:
        self.start_timer("hello", self.hello_timeout, self._hello_timed_out)

    def _hello_timed_out(self) -> None:
        if not self._joined and not self.closed:
            self._fail("UNAUTHENTICATED", "no auth message in time")

    def violation(self, reason: str) -> None:
        self._fail("BAD_REQUEST", reason)

    def _send(self, value: dict[str, Any]) -> None:
        if not self.closed:
            self.channel.send_message(_dumps(value))

    def _error(self, code: str, message: str, **extra: Any) -> None:
        self._send({"type": "error", "code": code, "error": message, **extra})

    def _fail(self, code: str, message: str) -> None:
        """Say why, then close: the client broke the protocol or did not authenticate."""
        self.broker.stats.protocol_violations += code == "BAD_REQUEST"
        log.info("plain session {session} from {peer} closed: {reason}",
                 session=self.session_id, peer=self.channel.peer, reason=message)
        self._error(code, message)
        self.channel.close(POLICY_VIOLATION, code)
        self.start_timer("abort", 2.0, self.channel.abort)

    def received_text(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self._fail("BAD_REQUEST", "send JSON text messages, not binary ones")
            return
        try:
            message = json.loads(payload)
        except ValueError:
            self._fail("BAD_REQUEST", "a message must be one JSON object")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._fail("BAD_REQUEST", 'a message must be a JSON object with a "type"')
            return
        kind = message["type"]
        if kind == "ping":
            self._send({"type": "pong"})
        elif kind == "auth":
            self._auth(message)
        elif not self._joined:
            self._error("UNAUTHENTICATED", 'send {"type": "auth", "token": ...} first')
        elif kind == "subscribe":
            self._subscribe(message)
        elif kind == "unsubscribe":
            self._unsubscribe(message)
        else:
            self._error("BAD_REQUEST", f"unknown message type {kind!r}; use auth, "
                        "subscribe, unsubscribe or ping")

    # -- auth ------------------------------------------------------------------------------

    def _auth(self, message: dict[str, Any]) -> None:
        if self._verifying:
            self._error("CONFLICT", "an auth message is being checked already")
            return
        token = message.get("token")
        if token is None and not self._joined and self.gatekeeper.allow_anonymous:
            self._welcome(self.gatekeeper.anonymous(self.session_id))
            return
        self._verifying = True
        d = self.gatekeeper.verify_ticket(token)
        d.addCallbacks(self._welcome, self._refused)

    def _refused(self, failure: Failure) -> None:
        self._verifying = False
        if self.closed:
            return
        if not failure.check(AuthenticationError):  # type: ignore[no-untyped-call]
            log.failure("verifying a token failed", failure)
        message = failure.getErrorMessage() if failure.check(  # type: ignore[no-untyped-call]
            AuthenticationError) else "the token could not be checked right now; try again"
        if self._joined:  # a renewal that failed: the old token still holds until it expires
            self._error("UNAUTHENTICATED", message)
        else:
            self._fail("UNAUTHENTICATED", message)

    def _welcome(self, identity: Identity) -> None:
        self._verifying = False
        if self.closed:
            return
        if self._joined:
            if identity.authid != self.authid:
                self._error("FORBIDDEN", "the new token belongs to another user")
                return
            self.identity = identity
            if self.authorizer is not None:
                self.authorizer.principal = identity.principal
            self.watch_expiry(identity)
            self._send({"type": "welcome", "session": self.session_id, "renewed": True})
            return
        self.cancel_timer("hello")
        self.identity = identity
        self.authid, self.authrole, self.authmethod = (
            identity.authid, identity.authrole, identity.authmethod)
        self.authorizer = self.gatekeeper.authorizer(identity)
        self._joined = True
        self.broker.join(self)
        self.watch_expiry(identity)
        self._send({"type": "welcome", "session": self.session_id, "authid": self.authid,
                    "authrole": self.authrole})

    # -- subscriptions ------------------------------------------------------------------

    def _topic(self, message: dict[str, Any]) -> tuple[str, str] | None:
        topic, match = message.get("topic"), message.get("match", "exact")
        if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC or any(
                c.isspace() or c == "#" for c in topic):
            self._error("VALIDATION_ERROR", "topic must be a URI such as "
                        "installsure.project.<id>.updated")
            return None
        if match not in MATCH_POLICIES:
            self._error("VALIDATION_ERROR", f"match must be one of {', '.join(MATCH_POLICIES)}",
                        topic=topic)
            return None
        return topic, match

    def _subscribe(self, message: dict[str, Any]) -> None:
        wanted = self._topic(message)
        if wanted is None:
            return
        topic, match = wanted
        if wanted in self._subscriptions:
            self._send({"type": "subscribed", "topic": topic, "match": match})
            return
        if len(self._subscriptions) >= self.max_subscriptions:
            self._error("RATE_LIMITED", f"at most {self.max_subscriptions} subscriptions",
                        topic=topic)
            return
        assert self.authorizer is not None  # noqa: S101 - set at welcome
        d = self.authorizer.authorize("subscribe", topic, match)
        d.addCallbacks(self._subscribe_decided, self._authorizer_failed,
                       callbackArgs=(topic, match), errbackArgs=(topic,))

    def _subscribe_decided(self, allowed: bool, topic: str, match: str) -> None:
        if self.closed:
            return
        if not allowed:
            self._error("FORBIDDEN", f"you may not subscribe to {topic} ({match})",
                        topic=topic)
            return
        subscription = self.broker.subscribe(self, topic, match)
        self._subscriptions[(topic, match)] = subscription
        self._send({"type": "subscribed", "topic": topic, "match": match})
        for event in self.broker.retained_for(self, subscription):
            self.channel.send_event(event)

    def _authorizer_failed(self, failure: Failure, topic: str) -> None:
        log.failure("authorizing a subscription failed", failure)
        self._error("UNAVAILABLE", "the subscription could not be authorized right now",
                    topic=topic)

    def _unsubscribe(self, message: dict[str, Any]) -> None:
        wanted = self._topic(message)
        if wanted is None:
            return
        subscription = self._subscriptions.pop(wanted, None)
        if subscription is None:
            self._error("NOT_FOUND", f"not subscribed to {wanted[0]} ({wanted[1]})",
                        topic=wanted[0])
            return
        self.broker.unsubscribe(self, subscription.id)
        self._send({"type": "unsubscribed", "topic": wanted[0], "match": wanted[1]})
