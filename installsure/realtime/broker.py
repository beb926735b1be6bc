"""The broker: sessions, subscriptions, publications, retained events, meta events.

It routes; it does not authenticate, authorize or serialize. Sessions (WAMP or plain
JSON, see :class:`Peer`) ask it to subscribe and publish after their authorizer said
yes, and it hands each matching subscriber an :class:`OutgoingEvent` to write.

Publications made here (by a session or by the server's own ``publish``) are delivered
to this process's subscribers at once and handed to ``relay`` (the Redis backplane),
which carries them to the other processes; publications arriving from there come in
through :meth:`Broker.deliver` and are not relayed again. So each matching subscription
anywhere gets each publication exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from installsure.realtime.metrics import REALTIME_STATS, RealtimeStats
from installsure.realtime.publication import OutgoingEvent, Publication, event_for
from installsure.realtime.subscriptions import Subscription, SubscriptionTable, global_id
from installsure.realtime.uris import matches

log = Logger(namespace="installsure.realtime.broker")


class Peer(Protocol):
    """What the broker needs of a session."""

    session_id: int
    authid: str
    authrole: str

    def deliver(self, event: OutgoingEvent) -> None:
        """Write ``event`` (never blocks; a slow reader is the session's problem)."""
        ...

    def revoke(self, subscription: Subscription, reason: str) -> None:
        """The broker dropped this session from ``subscription``: tell the client."""
        ...

    def details(self) -> dict[str, Any]:
        """``wamp.session.get``'s answer for this session."""
        ...

    def close(self, reason: str, message: str) -> Deferred[None]:
        """GOODBYE (or the plain protocol's equivalent), then close; fires once closed."""
        ...


Relay = Callable[[Publication], None]


class Broker:
    def __init__(
        self,
        *,
        disclose_to: Iterable[str] = ("*",),
        retained_ttl: float = 86400.0,
        stats: RealtimeStats = REALTIME_STATS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions: dict[int, Peer] = {}
        self.subscriptions = SubscriptionTable()
        #: session id -> subscriptions it holds
        self._held: dict[int, set[Subscription]] = {}
        roles = frozenset(disclose_to)
        self._disclose_all = "*" in roles
        self._disclose_to = roles
        #: topic -> its latest retained publication (a mirror of Redis, see backplane)
        self.retained: dict[str, Publication] = {}
        self.retained_ttl = retained_ttl
        self.relay: Relay | None = None
        self.stats = stats
        self._clock = clock
        stats.watch(self)

    # -- sessions ------------------------------------------------------------------

    def new_session_id(self) -> int:
        session_id = global_id()
        while session_id in self.sessions:
            session_id = global_id()
        return session_id

    def join(self, peer: Peer) -> None:
        self.sessions[peer.session_id] = peer
        self._held[peer.session_id] = set()
        self._meta("wamp.session.on_join", [peer.details()])

    def leave(self, peer: Peer) -> None:
        """The session ended: forget it and its subscriptions."""
        if self.sessions.get(peer.session_id) is not peer:
            return
        for subscription in list(self._held.get(peer.session_id, ())):
            self._drop(peer, subscription)
        del self.sessions[peer.session_id]
        self._held.pop(peer.session_id, None)
        self._meta("wamp.session.on_leave", [peer.session_id, peer.authid, peer.authrole])

    def goodbye_all(self, reason: str, message: str = "") -> Deferred[None]:
        """Say GOODBYE to every session; fires when all have closed (the drain's step)."""
        closing = []
        for peer in list(self.sessions.values()):
            try:
                closing.append(peer.close(reason, message))
            except Exception:
                log.failure("closing session {session} failed", session=peer.session_id)
        if not closing:
            return succeed(None)
        return DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)

    # -- subscriptions ---------------------------------------------------------------

    def subscribe(self, peer: Peer, uri: str, match: str) -> Subscription:
        subscription, created = self.subscriptions.add(uri, match, peer.session_id, peer)
        held = self._held.setdefault(peer.session_id, set())
        fresh = subscription not in held
        held.add(subscription)
        if created:
            self._meta("wamp.subscription.on_create",
                       [peer.session_id, subscription.details()])
        if fresh:
            self._meta("wamp.subscription.on_subscribe", [peer.session_id, subscription.id])
        return subscription

    def held_by(self, peer: Peer) -> list[Subscription]:
        return list(self._held.get(peer.session_id, ()))

    def unsubscribe(self, peer: Peer, subscription_id: int) -> Subscription | None:
        """Drop ``peer`` from the subscription; None when it did not hold it."""
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription not in self._held.get(peer.session_id, ()):
            return None
        self._drop(peer, subscription)
        return subscription

    def revoke(self, peer: Peer, subscription: Subscription, reason: str) -> None:
        """Take ``peer`` off ``subscription`` and tell it why (authorization withdrawn)."""
        if subscription in self._held.get(peer.session_id, ()):
            self._drop(peer, subscription)
            peer.revoke(subscription, reason)

    def _drop(self, peer: Peer, subscription: Subscription) -> None:
        self._held.get(peer.session_id, set()).discard(subscription)
        deleted = self.subscriptions.remove(subscription, peer.session_id)
        self._meta("wamp.subscription.on_unsubscribe", [peer.session_id, subscription.id])
        if deleted:
            self._meta("wamp.subscription.on_delete", [peer.session_id, subscription.id])

    # -- publications ----------------------------------------------------------------

    def publish(
        self,
        topic: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        publisher: Peer | None = None,
        **options: Any,
    ) -> Publication:
        """Publish on every process; returns the publication (with its id)."""
        publication = Publication(
            id=global_id(), topic=topic, args=args, kwargs=kwargs,
            publisher=publisher.session_id if publisher is not None else None,
            publisher_authid=publisher.authid if publisher is not None else None,
            publisher_authrole=publisher.authrole if publisher is not None else None,
            timestamp=self._clock(), **options,
        )
        self.stats.published += 1
        if publication.retain:
            self.retained[topic] = publication
        self.deliver(publication)
        if self.relay is not None:
            self.relay(publication)
        return publication

    def deliver(self, publication: Publication) -> int:
        """Hand ``publication`` to this process's matching subscribers; returns how many."""
        delivered = 0
        filtered = publication.filtered
        # Without black- or white-lists only the publisher itself may be left out.
        excluded = publication.publisher if publication.exclude_me else None
        may_disclose = publication.publisher is not None
        for subscription in self.subscriptions.matching(publication.topic):
            plain: OutgoingEvent | None = None
            disclosed: OutgoingEvent | None = None
            for session_id, peer in list(subscription.subscribers.items()):
                if filtered:
                    if not publication.admits(session_id, peer.authid, peer.authrole):
                        continue
                elif session_id == excluded:
                    continue
                if may_disclose and self.discloses_to(peer.authrole):
                    if disclosed is None:
                        disclosed = event_for(subscription.id, subscription.match,
                                              publication, disclose=True)
                    peer.deliver(disclosed)
                else:
                    if plain is None:
                        plain = event_for(subscription.id, subscription.match,
                                          publication, disclose=False)
                    peer.deliver(plain)
                delivered += 1
        self.stats.delivered += delivered
        return delivered

    def now(self) -> float:
        return self._clock()

    def discloses_to(self, authrole: str) -> bool:
        return self._disclose_all or authrole in self._disclose_to

    def remember(self, publication: Publication) -> None:
        """A retained publication from another process (or from Redis at start)."""
        current = self.retained.get(publication.topic)
        if current is None or current.timestamp <= publication.timestamp:
            self.retained[publication.topic] = publication

    def retained_for(self, peer: Peer, subscription: Subscription) -> list[OutgoingEvent]:
        """The retained events a new subscriber of ``subscription`` gets at once."""
        now = self._clock()
        found = []
        if subscription.match == "exact":  # the usual case: one lookup, not a scan
            exact = self.retained.get(subscription.uri)
            candidates = [(subscription.uri, exact)] if exact is not None else []
        else:
            candidates = list(self.retained.items())
        for topic, publication in candidates:
            if now - publication.timestamp > self.retained_ttl:
                self.retained.pop(topic, None)
                continue
            if not matches(subscription.uri, subscription.match, topic):
                continue
            if not publication.admits(peer.session_id, peer.authid, peer.authrole):
                continue
            disclose = publication.publisher is not None and self.discloses_to(peer.authrole)
            found.append(event_for(subscription.id, subscription.match, publication,
                                   disclose=disclose, retained=True))
        return found

    def prune_retained(self) -> int:
        """Forget retained publications older than ``retained_ttl``; how many."""
        cutoff = self._clock() - self.retained_ttl
        old = [t for t, p in self.retained.items() if p.timestamp < cutoff]
        for topic in old:
            del self.retained[topic]
        return len(old)

    # -- meta events -----------------------------------------------------------------

    def _meta(self, topic: str, args: list[Any]) -> None:
        # Meta events stay on this process: they describe its own sessions. Built only
        # when someone listens.
        if self.subscriptions.matching(topic):
            publication = Publication(id=global_id(), topic=topic, args=args,
                                      timestamp=self._clock())
            self.deliver(publication)
