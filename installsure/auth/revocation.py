"""Revoked sessions, as every process sees them within a second.

A revoked session's id goes into Redis (``<prefix>revoked:session:<id>``) for as long
as its access tokens can live (``auth.access_token_ttl``, plus the clock leeway), and
is announced on :data:`~installsure.auth.interfaces.SESSION_REVOKED_CHANNEL`. Each
process keeps a small cache of the sessions it has checked: a session found live is
trusted for ``auth.revocation_cache_ttl`` seconds, and an announcement removes it from
every cache at once. The cache is only trusted while Redis confirms the subscription;
before that, while the connection is down, or should subscribing fail, every check
asks Redis (and the database when Redis cannot answer). So a request costs nothing
extra while its session is in the cache, and a logout is seen everywhere as soon as
the announcement arrives (milliseconds), or the cache entry ages out should it be lost.

Announcements made while the pub/sub connection was down never arrive, and a revocation
made while Redis could not be reached is in the database only. So when the subscription
is confirmed again after a lost connection, the cache is emptied and the sessions the
database has revoked within an access token's lifetime (``recently_revoked``) are
written and announced again: every process then refuses them, and so does the
realtime broker, which closes their WebSocket sessions on the announcement.

The database stays the source of truth (``sessions.revoked_at``): when Redis cannot
answer, :class:`~installsure.auth.verifier.TokenVerifier` asks the database instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.auth.interfaces import SESSION_REVOKED_CHANNEL
from installsure.auth.tokens import CLOCK_LEEWAY_SECONDS
from installsure.bounded import remember
from installsure.redis.interfaces import RedisCommands, Subscription

log = Logger(namespace="installsure.auth.revocation")

#: Entries a process caches at most; past it the cache starts again (a bound on memory).
MAX_CACHED = 100_000
RESUBSCRIBE_DELAY = 2.0


class SessionRevocations:
    """Which sessions are revoked (see module docstring)."""

    def __init__(
        self,
        redis: RedisCommands,
        *,
        access_token_ttl: float,
        cache_ttl: float,
        reactor: IReactorTime,
        clock: Callable[[], float] = time.monotonic,
        channel: str = SESSION_REVOKED_CHANNEL,
        recently_revoked: Callable[[float], defer.Deferred[list[str]]] | None = None,
    ) -> None:
        self._redis = redis
        self._remember_ms = int((access_token_ttl + CLOCK_LEEWAY_SECONDS + 1) * 1000)
        self._cache_ttl = cache_ttl
        self._reactor = reactor
        self._clock = clock
        self._channel = channel
        #: Sessions the database revoked within the given number of seconds.
        self._recently_revoked = recently_revoked
        #: Session id -> until when (clock) it is trusted to be live.
        self._live: dict[str, float] = {}
        #: Session id -> until when it is known to be revoked.
        self._revoked: dict[str, float] = {}
        self._subscription: Subscription | None = None
        self._running = False
        self._retry: Any = None

    # -- life -------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._subscribe()

    def stop(self) -> defer.Deferred[None]:
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        subscription, self._subscription = self._subscription, None
        self._live.clear()
        if subscription is not None:
            return subscription.cancel()
        return defer.succeed(None)

    @property
    def subscribed(self) -> bool:
        return self._subscription is not None

    def _subscribe(self) -> None:
        if not self._running:
            return

        def subscribed(subscription: Subscription) -> None:
            if not self._running:
                subscription.cancel()
                return
            self._subscription = subscription
            self._live.clear()  # anything cached before may have missed an announcement
            log.debug("listening for session revocations on {channel}", channel=self._channel)

        def failed(failure: Any) -> None:
            if not self._running:
                return
            log.warn("cannot subscribe to session revocations yet ({reason}); every "
                     "request asks Redis meanwhile; retrying in {delay}s",
                     reason=failure.getErrorMessage(), delay=RESUBSCRIBE_DELAY)
            self._retry = self._reactor.callLater(RESUBSCRIBE_DELAY, self._subscribe)

        self._redis.subscribe(self._channel, self._announced, on_gap=self._gap) \
            .addCallbacks(subscribed, failed)

    def _gap(self) -> None:
        """The subscription is back after a lost connection (see module docstring)."""
        self._live.clear()
        if self._recently_revoked is None or not self._running:
            return
        window = self._remember_ms / 1000

        def announce(session_ids: list[str]) -> defer.Deferred[None]:
            log.info("Redis pub/sub is back: announcing again the {count} session(s) "
                     "revoked in the last {window:g} s", count=len(session_ids),
                     window=window)
            return self.revoke(session_ids)

        def failed(failure: Any) -> None:
            log.warn("could not announce again the sessions revoked while Redis was "
                     "unreachable ({reason}); other processes refuse them once their "
                     "cache entries age out, or when Redis cannot answer",
                     reason=failure.getErrorMessage())

        d = defer.maybeDeferred(self._recently_revoked, window)
        d.addCallback(announce).addErrback(failed)

    def _announced(self, _channel: str, session_id: str) -> None:
        self._forget_live(session_id)

    def _forget_live(self, session_id: str) -> None:
        self._live.pop(session_id, None)
        if len(self._revoked) >= MAX_CACHED:
            now = self._clock()
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            if len(self._revoked) >= MAX_CACHED:
                self._revoked.clear()
        self._revoked[session_id] = self._clock() + self._remember_ms / 1000

    # -- checks -----------------------------------------------------------------------

    def _listening(self) -> bool:
        subscription = self._subscription
        return subscription is not None and subscription.live

    def _key(self, session_id: str) -> str:
        return self._redis.key("revoked", "session", session_id)

    def cached(self, session_id: str) -> bool | None:
        """True/False when this process knows (revoked / live), None when it must ask."""
        now = self._clock()
        until = self._revoked.get(session_id)
        if until is not None:
            if until > now:
                return True
            del self._revoked[session_id]
        trusted = self._live.get(session_id)
        if trusted is not None:
            if trusted > now and self._listening():
                return False
            del self._live[session_id]
        return None

    def is_revoked(self, session_id: str) -> defer.Deferred[bool]:
        """Whether the session is revoked; fails with RedisUnavailable when it cannot
        be told (the caller asks the database then)."""
        known = self.cached(session_id)
        if known is not None:
            return defer.succeed(known)
        d: defer.Deferred[Any] = self._redis.execute("EXISTS", self._key(session_id))

        def answered(found: Any) -> bool:
            revoked = bool(int(found))
            if revoked:
                self._forget_live(session_id)
            elif self._cache_ttl > 0 and self._listening():
                remember(self._live, session_id, self._clock() + self._cache_ttl, MAX_CACHED)
            return revoked

        return d.addCallback(answered)

    # -- revoking ---------------------------------------------------------------------

    def revoke(self, session_ids: Iterable[str]) -> defer.Deferred[None]:
        """Add the sessions to the revocation set and announce them. This process
        refuses them at once; the Deferred fires once Redis has them (it fails with
        RedisUnavailable otherwise: the database has them revoked all the same, and
        other processes refuse them once their cache entry ages out)."""
        ids = list(dict.fromkeys(session_ids))
        for session_id in ids:
            self._forget_live(session_id)
        calls = []
        for session_id in ids:
            calls.append(self._redis.execute("SET", self._key(session_id), "1",
                                             "PX", self._remember_ms))
            calls.append(self._redis.publish(self._channel, session_id))
        if not calls:
            return defer.succeed(None)
        gathered = defer.gatherResults(calls, consumeErrors=True)

        def failed(failure: Any) -> Any:
            error = failure.value
            first = error.subFailure if isinstance(error, defer.FirstError) else failure
            log.warn("could not announce {count} revoked session(s) through Redis: {reason}",
                     count=len(ids), reason=first.getErrorMessage())
            return first

        return gathered.addCallbacks(lambda _: None, failed)
