"""In-memory doubles for broker tests: a channel that records what a session sends (each
message serialized and parsed again with autobahn's JSON serializer, so what is
recorded is what a client would read), and a router of such sessions on a
``MemoryReactorClock``."""

from __future__ import annotations

import time
from typing import Any

import txaio

txaio.use_twisted()

from autobahn.wamp import message as m  # noqa: E402
from autobahn.wamp.role import RoleSubscriberFeatures  # noqa: E402
from autobahn.wamp.serializer import JsonSerializer  # noqa: E402
from twisted.internet.testing import MemoryReactorClock  # noqa: E402

from installsure.realtime.authn import Gatekeeper  # noqa: E402
from installsure.realtime.broker import Broker  # noqa: E402
from installsure.realtime.metrics import RealtimeStats  # noqa: E402
from installsure.realtime.publication import OutgoingEvent  # noqa: E402
from installsure.realtime.rules import DEFAULT_RULES, parse_rules  # noqa: E402
from installsure.realtime.wamp import WampSession  # noqa: E402
from tests.realtime.helpers import Memberships, SignedTokenVerifier, make_token  # noqa: E402

_JSON = JsonSerializer()


class RecordingChannel:
    peer = "tcp4:127.0.0.1:1"

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.aborted = False
        self.session: Any = None

    def _record(self, message: Any) -> None:
        payload, binary = _JSON.serialize(message)
        self.sent.extend(_JSON.unserialize(payload, binary))

    def send_message(self, message: Any) -> None:
        self._record(message)

    def send_event(self, event: OutgoingEvent) -> None:
        self._record(event.message)

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> list[Any]:
        sent, self.sent = self.sent, []
        return sent

    def last(self) -> Any:
        return self.sent[-1]

    def of(self, kind: type) -> list[Any]:
        return [message for message in self.sent if isinstance(message, kind)]


class MemoryRouter:
    """A broker, a gatekeeper over signed test tokens, and sessions made on demand."""

    def __init__(self, *, rules: tuple[str, ...] = DEFAULT_RULES, allow_anonymous: bool = False,
                 disclose_to: tuple[str, ...] = ("*",)) -> None:
        self.clock = MemoryReactorClock()
        # Token expiries are UNIX times, as the real reactor's clock is.
        self.clock.advance(time.time())
        self.stats = RealtimeStats()
        self.broker = Broker(disclose_to=disclose_to, stats=self.stats,
                             clock=self.clock.seconds)
        self.verifier = SignedTokenVerifier()
        self.access = Memberships()
        self.gatekeeper = Gatekeeper(self.verifier, self.access, parse_rules(rules),
                                     allow_anonymous=allow_anonymous, stats=self.stats)

    def session(self, **kw: Any) -> tuple[WampSession, RecordingChannel]:
        channel = RecordingChannel()
        session = WampSession(self.broker, self.gatekeeper, channel, self.clock, **kw)
        channel.session = session
        session.opened()
        return session, channel

    def joined(self, user: str, role: str = "member", **token: Any) -> tuple[WampSession,
                                                                           RecordingChannel]:
        """A session that went through HELLO, CHALLENGE, AUTHENTICATE and WELCOME."""
        session, channel = self.session()
        session.received([m.Hello("installsure", {"subscriber": RoleSubscriberFeatures(
                                      subscription_revocation=True)},
                                  authmethods=["ticket"], authid=user)])
        assert isinstance(channel.last(), m.Challenge), channel.sent
        session.received([m.Authenticate(make_token(user, role, **token))])
        assert isinstance(channel.last(), m.Welcome), channel.sent
        channel.take()
        return session, channel


def subscribe(session: WampSession, channel: RecordingChannel, topic: str, *,
              match: str | None = None, request: int = 1, get_retained: bool | None = None
              ) -> Any:
    session.received([m.Subscribe(request, topic, match=match, get_retained=get_retained)])
    return channel.take()


def subscribed_id(replies: list[Any]) -> int:
    assert isinstance(replies[0], m.Subscribed), replies
    return int(replies[0].subscription)
