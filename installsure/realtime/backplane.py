"""The Redis pub/sub backplane: publications, retained events and the domain's signals
shared by every process.

* Publications: each process PUBLISHes the ones made on it (tagged with its node id) on
  one channel and delivers those of the other nodes to its own subscribers, so a
  subscription anywhere gets each event once. They go out on a connection of their own,
  one after the other, so that other nodes see one publisher's events in the order it
  made them (the shared pool's connections would race). When Redis is away an event is
  counted as dropped for the other nodes at once (never buffered), while local
  subscribers still get it; the subscription comes back with the connection.
* Retained events: a hash in Redis (topic -> latest publication) and a sorted set of
  when each was stored, pruned after ``retained_ttl``; every node loads the hash at start
  and mirrors later ones from the channel, so any node serves them at once.
* Signals from the domain (the channels of :mod:`installsure.auth.interfaces`):
  "membership changed" and "session revoked", whose messages go as they came to
  ``on_membership`` and ``on_revocation``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.auth.interfaces import MEMBERSHIP_CHANGED_CHANNEL, SESSION_REVOKED_CHANNEL
from installsure.realtime.broker import Broker
from installsure.realtime.publication import Publication
from installsure.redis.interfaces import (
    BlockingRedis,
    RedisCommands,
    RedisUnavailable,
    Subscription,
)

log = Logger(namespace="installsure.realtime.backplane")

SignalHandler = Callable[[str], object]

#: Seconds between attempts to subscribe while Redis does not answer at start.
RETRY_SECONDS = 1.0
#: Seconds Redis has to take one publication.
COMMAND_TIMEOUT = 2.0
PRUNE_SECONDS = 60.0


class Backplane:
    def __init__(
        self,
        broker: Broker,
        redis: RedisCommands,
        reactor: IReactorTime,
        *,
        channel: str = "realtime",
        membership_channel: str = MEMBERSHIP_CHANGED_CHANNEL,
        revocation_channel: str = SESSION_REVOKED_CHANNEL,
        on_membership: SignalHandler | None = None,
        on_revocation: SignalHandler | None = None,
        retained_ttl: float = 86400.0,
    ) -> None:
        self.broker = broker
        self.redis = redis
        self.reactor = reactor
        self.node = secrets.token_hex(8)
        self.channel = redis.key(channel)
        self.retained_key = redis.key(channel, "retained")
        self.retained_times_key = redis.key(channel, "retained-at")
        self.signals: dict[str, SignalHandler] = {}
        if on_membership is not None:
            self.signals[membership_channel] = on_membership
        if on_revocation is not None:
            self.signals[revocation_channel] = on_revocation
        self.retained_ttl = retained_ttl
        self._subscriptions: list[Subscription] = []
        self._ordered: BlockingRedis | None = None
        self._pending: dict[str, Any] = {}
        self._running = False
        self._down_reported = False
        self._timers: list[Any] = []
        self.ready: Deferred[None] = Deferred()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._ordered = self.redis.blocking_connection()
        self.broker.relay = self.relay
        self._subscribe_all()
        self._schedule(PRUNE_SECONDS, self._prune)

    def stop(self) -> Deferred[None]:
        self._running = False
        if self.broker.relay == self.relay:
            self.broker.relay = None
        for call in self._timers:
            if call.active():
                call.cancel()
        self._timers = []
        subscriptions, self._subscriptions = self._subscriptions, []
        done = [s.cancel() for s in subscriptions]
        if self._ordered is not None:
            done.append(self._ordered.close())
            self._ordered = None
        return DeferredList(done, consumeErrors=True).addCallback(lambda _: None)

    def _schedule(self, seconds: float, fn: Callable[[], object]) -> None:
        self._timers = [c for c in self._timers if c.active()]
        self._timers.append(self.reactor.callLater(seconds, fn))

    def _subscribe_all(self) -> None:
        if not self._running:
            return
        wanted: dict[str, Callable[[str, str], object]] = {self.channel: self._received}
        for name, handler in self.signals.items():
            wanted[name] = partial(self._signal_received, handler)
        calls = []
        for name, callback in wanted.items():
            if name in self._pending:
                continue
            self._pending[name] = True
            d = self.redis.subscribe(name, callback)
            d.addCallbacks(self._subscribed, self._subscribe_failed, errbackArgs=(name,))
            calls.append(d)
        if calls:
            DeferredList(calls).addCallback(self._maybe_ready)

    def _subscribed(self, subscription: Subscription) -> None:
        if not self._running:
            subscription.cancel()
            return
        self._subscriptions.append(subscription)

    def _subscribe_failed(self, failure: Failure, name: str) -> None:
        self._pending.pop(name, None)
        if self._running:
            log.warn("realtime backplane: cannot subscribe to {channel} yet ({error}); "
                     "retrying", channel=name, error=failure.getErrorMessage())
            self._schedule(RETRY_SECONDS, self._subscribe_all)

    def _maybe_ready(self, _: object) -> None:
        expected = 1 + len(self.signals)
        if len(self._subscriptions) < expected or self.ready.called:
            return
        d = self._load_retained()
        if self._ordered is not None:  # and the publishing connection is up too
            ordered = self._ordered
            d.addCallback(lambda _: ordered.execute("PING", timeout=COMMAND_TIMEOUT))
        d.addErrback(lambda _f: None)
        d.addCallback(lambda _: self.ready.callback(None) if not self.ready.called else None)

    # -- publications -------------------------------------------------------------------

    def relay(self, publication: Publication) -> None:
        data = publication.to_wire()
        data["n"] = self.node
        try:
            text = json.dumps(data, separators=(",", ":"))
        except (TypeError, ValueError):
            log.warn("event on {topic} has a payload JSON cannot carry; other nodes miss it",
                     topic=publication.topic)
            self.broker.stats.drop("not_json")
            return
        ordered = self._ordered
        if ordered is None or not ordered.is_connected:
            down = RedisUnavailable("the backplane's connection is down")
            self._relay_failed(Failure(down))  # type: ignore[no-untyped-call]
            return
        if publication.retain:
            stored = ordered.execute("HSET", self.retained_key, publication.topic, text,
                                     timeout=COMMAND_TIMEOUT)
            stored.addErrback(self._retain_failed, publication.topic)
            when = ordered.execute("ZADD", self.retained_times_key, publication.timestamp,
                                   publication.topic, timeout=COMMAND_TIMEOUT)
            when.addErrback(lambda _f: None)  # pruning is best effort
        d = ordered.execute("PUBLISH", self.channel, text, timeout=COMMAND_TIMEOUT)
        d.addCallbacks(self._relayed, self._relay_failed)

    def _relayed(self, _receivers: int) -> None:
        if self._down_reported:
            self._down_reported = False
            log.info("realtime backplane: Redis takes events again")

    def _relay_failed(self, failure: Failure) -> None:
        self.broker.stats.drop("backplane_down")
        if not self._down_reported:
            self._down_reported = True
            log.warn("realtime backplane: cannot publish to Redis ({error}); events reach "
                     "this node's subscribers only and are counted as dropped",
                     error=failure.getErrorMessage())

    def _retain_failed(self, failure: Failure, topic: str) -> None:
        log.warn("could not store the retained event of {topic}: {error}", topic=topic,
                 error=failure.getErrorMessage())

    def _received(self, _channel: str, text: str) -> None:
        try:
            data = json.loads(text)
            if data.get("n") == self.node:
                return  # ours: delivered when it was published
            publication = Publication.from_wire(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warn("realtime backplane: ignored a message that is not a publication")
            return
        if publication.retain:
            self.broker.remember(publication)
        self.broker.deliver(publication)

    def _signal_received(self, handler: SignalHandler, _channel: str, text: str) -> None:
        try:
            handler(text)
        except Exception:
            log.failure("handling a signal from the domain failed")

    # -- retained events ----------------------------------------------------------------

    def _load_retained(self) -> Deferred[None]:
        d = self.redis.execute("HGETALL", self.retained_key)

        def loaded(reply: Any) -> None:
            pairs = reply.items() if isinstance(reply, dict) else zip(
                reply[::2], reply[1::2], strict=True)
            now = self.broker.now()
            for _topic, text in pairs:
                try:
                    raw = text.decode() if isinstance(text, bytes) else text
                    publication = Publication.from_wire(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    continue
                if now - publication.timestamp <= self.retained_ttl:
                    self.broker.remember(publication)

        def failed(failure: Failure) -> None:
            log.warn("could not load retained events: {error}", error=failure.getErrorMessage())

        return d.addCallbacks(loaded, failed)

    def _prune(self) -> Deferred[None]:
        if not self._running:
            return succeed(None)
        self._schedule(PRUNE_SECONDS, self._prune)
        self.broker.prune_retained()
        cutoff = self.broker.now() - self.retained_ttl
        d = self.redis.execute("ZRANGEBYSCORE", self.retained_times_key, "-inf", cutoff)

        def old(topics: list[Any]) -> Deferred[Any] | None:
            if not topics:
                return None
            self.redis.execute("HDEL", self.retained_key, *topics)
            return self.redis.execute("ZREM", self.retained_times_key, *topics)

        return d.addCallback(old).addErrback(lambda _f: None)
