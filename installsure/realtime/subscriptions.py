"""The broker's subscriptions: one per (URI, match policy), shared by all its subscribers.

Finding the subscriptions a publication matches is the hot path of every event, so
each policy has its own index: a dict for exact URIs, a dict plus the set of prefix
lengths in use for prefixes (one lookup per length, not one test per subscription),
and wildcard patterns grouped by their number of components.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from attrs import define, field

from installsure.realtime.uris import EXACT, PREFIX, wildcard_matches

#: WAMP ids are integers in [1, 2^53] (exactly representable in JavaScript).
MAX_ID = 2**53

_random = random.SystemRandom()


def global_id() -> int:
    """A random id for sessions, publications and subscriptions (WAMP's global scope)."""
    return _random.randint(1, MAX_ID)


def iso_now(now: float | None = None) -> str:
    stamp = time.gmtime(time.time() if now is None else now)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)


@define(eq=False)
class Subscription:
    id: int
    uri: str
    match: str
    created: str
    #: session id -> the subscribing peer
    subscribers: dict[int, Any] = field(factory=dict)
    components: tuple[str, ...] = ()

    def details(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "uri": self.uri, "match": self.match}


class SubscriptionTable:
    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Subscription] = {}
        self._by_id: dict[int, Subscription] = {}
        self._exact: dict[str, Subscription] = {}
        self._prefix: dict[str, Subscription] = {}
        self._prefix_lengths: Counter[int] = Counter()
        self._wildcard: dict[int, list[Subscription]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def all(self) -> list[Subscription]:
        return list(self._by_id.values())

    def get(self, subscription_id: int) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def lookup(self, uri: str, match: str) -> Subscription | None:
        return self._by_key.get((uri, match))

    def add(self, uri: str, match: str, session_id: int, peer: Any) -> tuple[Subscription, bool]:
        """Subscribe ``peer``; returns the subscription and whether it was created."""
        existing = self._by_key.get((uri, match))
        if existing is not None:
            existing.subscribers[session_id] = peer
            return existing, False
        subscription_id = global_id()
        while subscription_id in self._by_id:
            subscription_id = global_id()
        subscription = Subscription(subscription_id, uri, match, iso_now())
        subscription.subscribers[session_id] = peer
        self._by_key[(uri, match)] = subscription
        self._by_id[subscription_id] = subscription
        if match == EXACT:
            self._exact[uri] = subscription
        elif match == PREFIX:
            self._prefix[uri] = subscription
            self._prefix_lengths[len(uri)] += 1
        else:
            subscription.components = tuple(uri.split("."))
            self._wildcard.setdefault(len(subscription.components), []).append(subscription)
        return subscription, True

    def remove(self, subscription: Subscription, session_id: int) -> bool:
        """Drop one subscriber; returns True when the subscription is gone with it."""
        subscription.subscribers.pop(session_id, None)
        if subscription.subscribers:
            return False
        key = (subscription.uri, subscription.match)
        if self._by_key.get(key) is not subscription:
            return False
        del self._by_key[key]
        del self._by_id[subscription.id]
        if subscription.match == EXACT:
            del self._exact[subscription.uri]
        elif subscription.match == PREFIX:
            del self._prefix[subscription.uri]
            length = len(subscription.uri)
            self._prefix_lengths[length] -= 1
            if not self._prefix_lengths[length]:
                del self._prefix_lengths[length]
        else:
            group = self._wildcard[len(subscription.components)]
            group.remove(subscription)
            if not group:
                del self._wildcard[len(subscription.components)]
        return True

    def matching(self, topic: str) -> list[Subscription]:
        """Every subscription that receives events published to ``topic``."""
        found = []
        exact = self._exact.get(topic)
        if exact is not None:
            found.append(exact)
        if self._prefix_lengths:
            prefixes = self._prefix
            for length in self._prefix_lengths:
                if length <= len(topic):
                    hit = prefixes.get(topic[:length])
                    if hit is not None:
                        found.append(hit)
        if self._wildcard:
            parts = tuple(topic.split("."))
            for subscription in self._wildcard.get(len(parts), ()):
                if wildcard_matches(subscription.components, parts):
                    found.append(subscription)
        return found
