"""Pub/sub on one dedicated connection that subscribes everything again after a reconnect.

txredisapi's SubscriberProtocol forgets its subscriptions with the connection and pairs
acknowledgements with commands by arrival order; here acknowledgements are matched by
channel name, and the set of live subscriptions is ours, so a new connection gets it all.

The subscriber is given what it needs (a way to make its connection, the reactor, the
time Redis has to answer) rather than the client service, which it knows nothing of.
"""

from __future__ import annotations

from typing import Any, Protocol

import txredisapi
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.redis._link import _Link
from installsure.redis._protocol import _Protocol, _SentinelProtocol
from installsure.redis.interfaces import (
    GapCallback,
    MessageCallback,
    RedisUnavailable,
    Subscription,
)
from installsure.redis.target import RedisTarget

log = Logger(namespace="installsure.redis.pubsub")

_ACKS = frozenset({"subscribe", "psubscribe", "unsubscribe", "punsubscribe"})
_Key = tuple[bool, str]  # (is_pattern, channel or pattern)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class _SubscriberProtocol(_Protocol):
    """Routes pushed messages and acknowledgements; other replies go the usual way."""

    def replyReceived(self, reply: Any) -> None:
        if type(reply) is list and reply:
            kind = reply[0]
            if kind == "message" and len(reply) == 3:
                self.factory.subscriber._deliver(False, reply[1], reply[1], reply[2])
                return
            if kind == "pmessage" and len(reply) == 4:
                self.factory.subscriber._deliver(True, reply[1], reply[2], reply[3])
                return
            if kind in _ACKS and len(reply) == 3:
                self.factory.subscriber._acknowledged(kind, _text(reply[1]))
                return
        super().replyReceived(reply)


class _SentinelSubscriberProtocol(_SubscriberProtocol, _SentinelProtocol):
    pass


class LinkFactory(Protocol):
    """Makes a new, not yet started link whose connections speak ``protocol``."""

    def __call__(self, *, protocol: type[Any]) -> _Link: ...


class _Subscription:
    __slots__ = ("_subscriber", "callback", "key", "on_gap")

    def __init__(self, subscriber: Subscriber, key: _Key, callback: MessageCallback,
                 on_gap: GapCallback | None) -> None:
        self._subscriber = subscriber
        self.key = key
        self.callback = callback
        self.on_gap = on_gap

    def cancel(self) -> defer.Deferred[None]:
        """Stop delivering to this callback (UNSUBSCRIBE when it was the last one)."""
        return self._subscriber._remove(self)

    @property
    def live(self) -> bool:
        return self._subscriber._is_live(self)

    def __repr__(self) -> str:
        kind = "pattern" if self.key[0] else "channel"
        return f"<Subscription {kind} {self.key[1]!r}>"


class Subscriber:
    """The subscriptions of one Redis client and the connection that carries them.

    ``new_link`` makes that connection, to ``target``; the owner starts ``link``.
    ``timeout``: seconds Redis has to confirm a subscription or answer a PING.

    A subscribed connection only ever receives, so a Redis host that vanished without
    closing the TCP connection would go unnoticed: every ``health_interval`` seconds a
    PING must come back within ``timeout``, else the connection is remade.
    """

    def __init__(
        self,
        new_link: LinkFactory,
        *,
        target: RedisTarget,
        reactor: IReactorTime,
        timeout: float,
        health_interval: float = 15.0,
    ) -> None:
        self._target = target
        self._reactor = reactor
        self._timeout = timeout
        self._health_interval = health_interval
        self._health_call: Any = None
        # One warning per hang, not one per reconnection attempt during it.
        self._silent_reported = False
        self._callbacks: dict[_Key, list[_Subscription]] = {}
        self._confirmed: set[_Key] = set()
        # Confirmed on some earlier connection: a confirmation on a later one ends a gap.
        self._once_confirmed: set[_Key] = set()
        self._ack_waiters: dict[_Key, list[defer.Deferred[None]]] = {}
        self._conn: Any = None
        self._connections = 0
        protocol = _SentinelSubscriberProtocol if target.is_sentinel else _SubscriberProtocol
        self._link: _Link = new_link(protocol=protocol)
        self._link.factory.subscriber = self
        self._link.on_connection.append(self._connected)

    @property
    def link(self) -> _Link:
        """The connection subscriptions travel on, for the owner to start."""
        return self._link

    def stop(self) -> defer.Deferred[None]:
        self._cancel_health_check()
        self._fail_all(RedisUnavailable("the Redis pub/sub connection was closed"))
        return self._link.stop()

    # --- liveness

    def _schedule_health_check(self) -> None:
        self._cancel_health_check()
        self._health_call = self._reactor.callLater(
            self._health_interval, self._check_health
        )

    def _cancel_health_check(self) -> None:
        if self._health_call is not None and self._health_call.active():
            self._health_call.cancel()
        self._health_call = None

    def _check_health(self) -> None:
        self._health_call = None
        conn = self._conn
        if conn is None:
            return
        try:
            answer = conn.execute_command("PING")
        except txredisapi.ConnectionError:
            return

        def silent() -> None:
            if conn is self._conn:
                level = log.debug if self._silent_reported else log.warn
                self._silent_reported = True
                level(
                    "Redis pub/sub connection to {target} did not answer PING within "
                    "{timeout}s; reconnecting",
                    target=self._target.describe(),
                    timeout=self._timeout,
                )
                conn.transport.abortConnection()

        deadline = self._reactor.callLater(self._timeout, silent)

        def answered(_: object) -> None:
            if deadline.active():
                deadline.cancel()
                if conn is self._conn:
                    self._silent_reported = False
                    self._schedule_health_check()

        answer.addBoth(answered)

    # --- subscribing

    def add(
        self, pattern: bool, name: str, callback: MessageCallback, *,
        on_gap: GapCallback | None = None,
    ) -> defer.Deferred[Subscription]:
        if not isinstance(name, str) or not name:
            return defer.fail(ValueError("a channel or pattern name must be a non-empty string"))
        given: object = callback  # typed callers cannot get this wrong; others can
        if not callable(given):
            return defer.fail(TypeError(f"the message callback must be callable, not {given!r}"))
        key = (pattern, name)
        subscription = _Subscription(self, key, callback, on_gap)
        existing = self._callbacks.setdefault(key, [])
        existing.append(subscription)
        if key in self._confirmed:
            return defer.succeed(subscription)
        if self._conn is None and self._link.state != "connecting":
            self._discard(subscription)
            return defer.fail(RedisUnavailable(self._link.unavailable_message()))
        if len(existing) == 1 and self._conn is not None:
            self._send("PSUBSCRIBE" if pattern else "SUBSCRIBE", name)
        # Not connected yet: _connected() subscribes everything that is registered.
        d = self._wait_ack(key)

        def failed(failure: Any) -> Any:
            self._discard(subscription)
            return failure

        return d.addCallbacks(lambda _: subscription, failed)

    def _wait_ack(self, key: _Key) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._ack_waiters.setdefault(key, []).append(d)

        def expire() -> None:
            if not d.called:
                waiters = self._ack_waiters.get(key, [])
                if d in waiters:
                    waiters.remove(d)
                kind = "pattern" if key[0] else "channel"
                d.errback(
                    RedisUnavailable(
                        f"Redis did not confirm the subscription to {kind} {key[1]!r} within "
                        f"{self._timeout}s (is it running at {self._target.describe()}?)"
                    )
                )

        call = self._reactor.callLater(self._timeout, expire)

        def done(result: object) -> object:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(done)

    def _remove(self, subscription: _Subscription) -> defer.Deferred[None]:
        key = subscription.key
        if not self._discard(subscription):
            return defer.succeed(None)
        if self._conn is not None and key not in self._callbacks:
            self._send("PUNSUBSCRIBE" if key[0] else "UNSUBSCRIBE", key[1])
        return defer.succeed(None)

    def _discard(self, subscription: _Subscription) -> bool:
        """Forget one callback; True when it was registered."""
        key = subscription.key
        callbacks = self._callbacks.get(key)
        if not callbacks or subscription not in callbacks:
            return False
        callbacks.remove(subscription)
        if not callbacks:
            del self._callbacks[key]
            self._confirmed.discard(key)
            self._once_confirmed.discard(key)
        return True

    def _is_live(self, subscription: _Subscription) -> bool:
        key = subscription.key
        return key in self._confirmed and subscription in self._callbacks.get(key, ())

    def _send(self, command: str, *names: str) -> None:
        conn = self._conn
        conn.transport.write(conn._build_command(command, *names))

    # --- events

    def _connected(self, conn: Any) -> None:
        self._conn = conn
        self._connections += 1
        self._confirmed.clear()
        conn.whenDisconnected().addCallback(self._disconnected)
        self._schedule_health_check()
        channels = [name for pattern, name in self._callbacks if not pattern]
        patterns = [name for pattern, name in self._callbacks if pattern]
        if channels:
            self._send("SUBSCRIBE", *channels)
        if patterns:
            self._send("PSUBSCRIBE", *patterns)
        if self._connections > 1 and (channels or patterns):
            log.info(
                "Redis pub/sub reconnected: subscribed again to {channels} channel(s) and "
                "{patterns} pattern(s)",
                channels=len(channels),
                patterns=len(patterns),
            )

    def _disconnected(self, conn: Any) -> None:
        if conn is self._conn:
            self._conn = None
            self._confirmed.clear()
            self._cancel_health_check()

    def _acknowledged(self, kind: str, name: str) -> None:
        if kind.startswith(("un", "pun")):
            return
        key = (kind == "psubscribe", name)
        if key in self._callbacks and key not in self._confirmed:
            self._confirmed.add(key)
            if key in self._once_confirmed:
                self._gap_ended(key)
            self._once_confirmed.add(key)
        for d in self._ack_waiters.pop(key, []):
            if not d.called:  # a caller may have cancelled it
                d.callback(None)

    def _gap_ended(self, key: _Key) -> None:
        for subscription in list(self._callbacks.get(key, ())):
            if subscription.on_gap is None:
                continue
            try:
                subscription.on_gap()
            except Exception:
                log.failure("pub/sub gap callback for {name} failed", name=key[1])

    def _deliver(self, pattern: bool, name: Any, channel: Any, message: Any) -> None:
        callbacks = self._callbacks.get((pattern, _text(name)))
        if not callbacks:
            return
        channel_text = _text(channel)
        message_text = _text(message)
        for subscription in list(callbacks):
            try:
                subscription.callback(channel_text, message_text)
            except Exception:
                log.failure(
                    "pub/sub callback for {channel} failed", channel=channel_text
                )

    def _fail_all(self, error: Exception) -> None:
        waiters, self._ack_waiters = self._ack_waiters, {}
        for ds in waiters.values():
            for d in ds:
                if not d.called:
                    d.errback(error)
