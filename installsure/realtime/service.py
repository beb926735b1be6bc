"""The realtime part of a process: broker, ``/ws`` endpoint, backplane, and the server's
own ``publish`` used by the job runner and the HTTP API.

Every role builds one (worker processes have no WebSocket clients, but their job events
must reach the API nodes' subscribers through the backplane). ``goodbye_all`` is the
drain's step: GOODBYE ``wamp.close.system_shutdown`` to every session, then WebSocket
close 1001.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.realtime.authn import Gatekeeper
from installsure.realtime.backplane import Backplane
from installsure.realtime.broker import Broker
from installsure.realtime.lifetime import REVOKED, SYSTEM_SHUTDOWN
from installsure.realtime.principal import AccessTokenVerifier, ProjectAccess
from installsure.realtime.resource import WebSocketEndpoint
from installsure.realtime.rules import parse_rules
from installsure.realtime.settings import RealtimeSettings
from installsure.realtime.websocket import RealtimeFactory
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.realtime")

SUBSCRIPTION_REVOKED = "wamp.subscription.revoked"

#: Topics whose latest event a new subscriber gets at once (API.md: file progress).
_RETAINED_SUFFIXES = (".progress",)


class RealtimeService(Service):
    name = "realtime"

    def __init__(
        self,
        settings: RealtimeSettings,
        redis: RedisCommands,
        verifier: AccessTokenVerifier,
        access: ProjectAccess,
        reactor: IReactorTime,
        *,
        allowed_origins: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.reactor = reactor
        self.broker = Broker(disclose_to=settings.disclose_publisher_to,
                             retained_ttl=settings.retained_ttl)
        self.gatekeeper = Gatekeeper(verifier, access, parse_rules(settings.rules),
                                     allow_anonymous=settings.allow_anonymous)
        self.factory = RealtimeFactory(self.broker, self.gatekeeper, settings, reactor,
                                       allowed_origins=allowed_origins)
        self.resource = WebSocketEndpoint(self.factory)
        self.backplane = Backplane(
            self.broker, redis, reactor, channel=settings.backplane_channel,
            on_membership=self.memberships_changed, on_revocation=self.sessions_revoked,
            retained_ttl=settings.retained_ttl,
        )

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.backplane.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        # Sessions still open (no drain ran, e.g. after a failed start) are closed too.
        closing = self.goodbye_all()
        return closing.addBoth(lambda _: self.backplane.stop())

    # -- for the drain ----------------------------------------------------------------

    def goodbye_all(self, reason: str = SYSTEM_SHUTDOWN) -> Deferred[None]:
        """GOODBYE to every session, then close 1001; fires when all are closed."""
        count = len(self.broker.sessions)
        if count:
            log.info("saying goodbye to {count} realtime session(s): {reason}", count=count,
                     reason=reason)
        return self.broker.goodbye_all(reason, "the server is shutting down"
                                       if reason == SYSTEM_SHUTDOWN else "")

    # -- the server's own publications ----------------------------------------------------

    def publish(self, topic: str, payload: Any, *, retain: bool | None = None,
                **options: Any) -> None:
        """Publish ``payload`` (one positional argument) on every process. Never raises:
        an event that cannot be published is logged, and the caller goes on."""
        if retain is None:
            retain = topic.endswith(_RETAINED_SUFFIXES)
        try:
            self.broker.publish(topic, [payload], None, retain=retain, **options)
        except Exception:
            log.failure("publishing an event on {topic} failed", topic=topic)

    # -- the domain's signals ---------------------------------------------------------------

    def memberships_changed(self, text: str) -> Deferred[None]:
        """Drop cached decisions (of the message's ``userId``, or of everyone when it
        names none, e.g. a deleted project) and revoke subscriptions no longer allowed."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        user_id = data.get("userId") if isinstance(data, dict) else None
        checks = []
        for peer in list(self.broker.sessions.values()):
            authorizer = getattr(peer, "authorizer", None)
            if authorizer is None or (user_id is not None and peer.authid != user_id):
                continue
            authorizer.forget()
            for subscription in self.broker.held_by(peer):
                d = authorizer.authorize("subscribe", subscription.uri, subscription.match)
                d.addCallback(self._recheck, peer, subscription)
                d.addErrback(lambda f: log.failure("re-checking a subscription failed", f))
                checks.append(d)
        if not checks:
            return succeed(None)
        return DeferredList(checks).addCallback(lambda _: None)

    def _recheck(self, allowed: bool, peer: Any, subscription: Any) -> None:
        if not allowed:
            log.info("revoking {authid}'s subscription to {uri}: no longer allowed",
                     authid=peer.authid, uri=subscription.uri)
            self.broker.revoke(peer, subscription, SUBSCRIPTION_REVOKED)

    def sessions_revoked(self, session_id: str) -> Deferred[None]:
        """Close the sessions opened with a token of the revoked login session."""
        session_id = session_id.strip()
        if not session_id:
            return succeed(None)
        closing = []
        for peer in list(self.broker.sessions.values()):
            identity = getattr(peer, "identity", None)
            principal = getattr(identity, "principal", None)
            if principal is not None and principal.session_id == session_id:
                log.info("closing realtime session {session} of {authid}: its login "
                         "session was revoked", session=peer.session_id, authid=peer.authid)
                closing.append(peer.close(REVOKED, "this login session was revoked"))
        if not closing:
            return succeed(None)
        return DeferredList(closing).addCallback(lambda _: None)



HEALTH_TOPIC = "installsure.system.health"


class HealthAnnouncer:
    """Publishes the health checks' verdict on ``installsure.system.health`` (retained)
    when it changes: ``{"status": "healthy"|"degraded", "checks": {name: ok}}``."""

    def __init__(self, realtime: RealtimeService) -> None:
        self.realtime = realtime
        self.last: dict[str, Any] | None = None

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        checks = {name: bool(getattr(result, "ok", False)) for name, result in results.items()}
        verdict = {"status": "healthy" if all(checks.values()) else "degraded",
                   "checks": checks}
        if verdict != self.last:
            self.last = verdict
            self.realtime.publish(HEALTH_TOPIC, verdict, retain=True)
        return results


class RealtimeJobEventPublisher:
    """The job runner's publisher (``installsure.jobs.events.JobEventPublisher``)."""

    def __init__(self, realtime: RealtimeService) -> None:
        self.realtime = realtime

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.realtime.publish(topic, payload)
