"""One WAMP v2 session on the router side: HELLO to GOODBYE, as a state machine.

The channel unserializes what arrives (autobahn's serializers) and hands the messages
to :meth:`WampSession.received`; anything that breaks the protocol (a message that is
not allowed in the current state, one no client may send, bytes that are not WAMP)
ends in :meth:`WampSession.violation`: ABORT ``wamp.error.protocol_violation`` and the
transport closed. The broker routes, the authorizer decides, this class speaks WAMP.
"""

from __future__ import annotations

from typing import Any

from autobahn.wamp import message as m
from autobahn.wamp.role import RoleBrokerFeatures, RoleDealerFeatures
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.realtime.authn import ANONYMOUS, Gatekeeper, Identity
from installsure.realtime.broker import Broker
from installsure.realtime.lifetime import (
    EXPIRED,
    GOING_AWAY,
    NORMAL_CLOSURE,
    PROTOCOL_ERROR,
    SYSTEM_SHUTDOWN,
    Channel,
    SessionLifetime,
)
from installsure.realtime.meta import META_PROCEDURES, MetaError
from installsure.realtime.principal import AuthenticationError
from installsure.realtime.publication import OutgoingEvent
from installsure.realtime.subscriptions import Subscription

log = Logger(namespace="installsure.realtime.wamp")

REALM = "installsure"
REAUTHENTICATE = "installsure.session.reauthenticate"
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"
NOT_AUTHORIZED = "wamp.error.not_authorized"

ROUTER_ROLES = {
    "broker": RoleBrokerFeatures(
        publisher_identification=True, pattern_based_subscription=True,
        session_meta_api=True, subscription_meta_api=True,
        subscriber_blackwhite_listing=True, publisher_exclusion=True,
        subscription_revocation=True, event_retention=True,
    ),
    # Only for the meta procedures (and re-authentication): clients' RPC is not routed.
    "dealer": RoleDealerFeatures(session_meta_api=True),
}

#: Messages only a router sends: a client sending one breaks the protocol.
_ROUTER_ONLY = (m.Welcome, m.Challenge, m.Subscribed, m.Unsubscribed, m.Event,
                m.Published, m.Result, m.Registered, m.Unregistered, m.Invocation,
                m.Interrupt)

ESTABLISHING, AUTHENTICATING, OPEN, CLOSING = "establishing", "authenticating", "open", "closing"


def _frozen(values: list[Any] | None) -> frozenset[Any] | None:
    return frozenset(values) if values is not None else None


class WampSession(SessionLifetime):
    def __init__(
        self,
        broker: Broker,
        gatekeeper: Gatekeeper,
        channel: Channel,
        reactor: IReactorTime,
        *,
        hello_timeout: float = 10.0,
        close_timeout: float = 2.0,
        max_subscriptions: int = 1000,
        transport_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reactor, channel, transport_info or {})
        self.broker = broker
        self.gatekeeper = gatekeeper
        self.hello_timeout = hello_timeout
        self.close_timeout = close_timeout
        self.max_subscriptions = max_subscriptions
        self.session_id = broker.new_session_id()
        self.state = ESTABLISHING
        self._joined = False
        self._closing_code = NORMAL_CLOSURE

    # -- the broker's side (Peer) --------------------------------------------------------

    def deliver(self, event: OutgoingEvent) -> None:
        # Not once GOODBYE is said: a client takes any message after it as a protocol
        # error and drops the connection instead of finishing the close.
        if self.state == OPEN and not self.closed:
            self.channel.send_event(event)

    def revoke(self, subscription: Subscription, reason: str) -> None:
        # Only a subscriber that announced the feature may be told (WAMP's subscription
        # revocation); to the others the subscription just falls silent.
        if self._hears_revocation and self.state == OPEN and not self.closed:
            self.channel.send_message(
                m.Unsubscribed(0, subscription=subscription.id, reason=reason))

    def details(self) -> dict[str, Any]:
        return {"session": self.session_id, "authid": self.authid, "authrole": self.authrole,
                "authmethod": self.authmethod, "authprovider": "installsure",
                "transport": self.transport_info}

    def close(self, reason: str, message: str) -> Deferred[None]:
        """GOODBYE now; the transport closes on the client's GOODBYE or after the close
        timeout, whichever comes first."""
        if self.closed:
            return self.when_closed()
        if self.state != OPEN:
            self._closing_code = GOING_AWAY if reason == SYSTEM_SHUTDOWN else NORMAL_CLOSURE
            self.channel.close(self._closing_code, reason)
            return self.when_closed()
        self.state = CLOSING
        self._closing_code = GOING_AWAY if reason == SYSTEM_SHUTDOWN else NORMAL_CLOSURE
        self.channel.send_message(m.Goodbye(reason, message or None))
        self.start_timer("close", self.close_timeout, self._close_transport)
        return self.when_closed()

    def _close_transport(self) -> None:
        self.channel.close(self._closing_code, "")
        # A client that does not answer the WebSocket close either is cut off.
        self.start_timer("abort", self.close_timeout, self.channel.abort)

    def expired(self) -> None:
        log.info("session {session} of {authid}: access token expired", session=self.session_id,
                 authid=self.authid)
        self.close(EXPIRED, "the access token expired; connect again with a new one")

    # -- the channel's side ------------------------------------------------------------

    def opened(self) -> None:
        self.start_timer("hello", self.hello_timeout, self._hello_timed_out)

    def _hello_timed_out(self) -> None:
        if self.state in (ESTABLISHING, AUTHENTICATING) and not self.closed:
            self._abort("wamp.error.timeout", "no HELLO/AUTHENTICATE in time")

    def violation(self, reason: str) -> None:
        """The client broke the protocol: ABORT and close (and keep serving the rest)."""
        if self.closed or self.state == "aborted":
            return
        self.broker.stats.protocol_violations += 1
        log.info("session {session} from {peer}: protocol violation: {reason}",
                 session=self.session_id, peer=self.channel.peer, reason=reason)
        self._abort(PROTOCOL_VIOLATION, reason, code=PROTOCOL_ERROR)

    def _abort(self, reason: str, message: str, code: int = NORMAL_CLOSURE) -> None:
        self.state = "aborted"
        self.channel.send_message(m.Abort(reason, message))
        self.channel.close(code, reason)
        self.start_timer("abort", self.close_timeout, self.channel.abort)

    def received(self, messages: list[Any]) -> None:
        for message in messages:
            if self.closed or self.state == "aborted":
                return
            self._handle(message)

    def left(self) -> None:
        if self._joined:
            self._joined = False
            self.broker.leave(self)

    # -- dispatch ------------------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        if isinstance(message, _ROUTER_ONLY):
            self.violation(f"{type(message).__name__.upper()} is sent by routers, not clients")
            return
        if self.state == ESTABLISHING:
            if isinstance(message, m.Hello):
                self._hello(message)
            else:
                self.violation(f"{type(message).__name__.upper()} before HELLO")
            return
        if self.state == AUTHENTICATING:
            if isinstance(message, m.Authenticate) and self._challenged:
                self._authenticate(message)
            else:
                self.violation(f"{type(message).__name__.upper()} while authenticating")
            return
        handler = self._OPEN_HANDLERS.get(type(message))
        if handler is None:
            self.violation(f"{type(message).__name__.upper()} in an open session")
            return
        handler(self, message)

    # -- opening ---------------------------------------------------------------------------

    _challenged = False
    _hears_revocation = False

    def _hello(self, hello: m.Hello) -> None:
        subscriber = (hello.roles or {}).get("subscriber")
        self._hears_revocation = bool(getattr(subscriber, "subscription_revocation", False))
        if hello.realm != REALM:
            self._abort("wamp.error.no_such_realm", f"the realm here is {REALM!r}")
            return
        methods = hello.authmethods or []
        if "ticket" in methods:
            self.state = AUTHENTICATING
            self._challenged = True
            self.channel.send_message(m.Challenge("ticket", {}))
            return
        if self.gatekeeper.allow_anonymous and (not methods or ANONYMOUS in methods):
            self._welcome(self.gatekeeper.anonymous(self.session_id))
            return
        self.gatekeeper.stats.auth_failed("no_method")
        self._abort("wamp.error.no_auth_method",
                    "authenticate with authmethods ['ticket'], the ticket being an access "
                    "token from /api/auth/login")

    def _authenticate(self, authenticate: m.Authenticate) -> None:
        self._challenged = False
        d = self.gatekeeper.verify_ticket(authenticate.signature)
        d.addCallbacks(self._welcome, self._refused)

    def _refused(self, failure: Failure) -> None:
        if self.closed:
            return
        if failure.check(AuthenticationError):  # type: ignore[no-untyped-call]
            self._abort("wamp.error.authentication_failed", failure.getErrorMessage())
            return
        log.failure("verifying a ticket failed", failure)
        self._abort("wamp.error.authentication_failed",
                    "the ticket could not be checked right now; try again")

    def _welcome(self, identity: Identity) -> None:
        if self.closed:
            return
        self.cancel_timer("hello")
        self.identity = identity
        self.authid, self.authrole, self.authmethod = (
            identity.authid, identity.authrole, identity.authmethod)
        self.authorizer = self.gatekeeper.authorizer(identity)
        self.state = OPEN
        self.channel.send_message(m.Welcome(
            self.session_id, ROUTER_ROLES, realm=REALM, authid=self.authid,
            authrole=self.authrole, authmethod=self.authmethod, authprovider="installsure",
        ))
        self._joined = True
        self.broker.join(self)
        self.watch_expiry(identity)

    # -- open session ---------------------------------------------------------------------

    def _error(self, request_type: int, request: int, uri: str, text: str) -> None:
        self.channel.send_message(m.Error(request_type, request, uri, args=[text]))

    def _goodbye(self, goodbye: m.Goodbye) -> None:
        if self.state == CLOSING:  # the answer to ours
            self.cancel_timer("close")
            self._close_transport()
            return
        self.state = CLOSING
        self.channel.send_message(m.Goodbye("wamp.close.goodbye_and_out"))
        self._close_transport()

    def _subscribe(self, subscribe: m.Subscribe) -> None:
        if self.state != OPEN:
            return
        if len(self.broker.held_by(self)) >= self.max_subscriptions:
            self._error(m.Subscribe.MESSAGE_TYPE, subscribe.request,
                        "installsure.error.too_many_subscriptions",
                        f"a session may hold at most {self.max_subscriptions} subscriptions")
            return
        match = subscribe.match or "exact"
        assert self.authorizer is not None  # noqa: S101 - set in WELCOME
        d = self.authorizer.authorize("subscribe", subscribe.topic, match)
        d.addCallbacks(self._subscribe_decided, self._authorizer_failed,
                       callbackArgs=(subscribe, match),
                       errbackArgs=(m.Subscribe.MESSAGE_TYPE, subscribe.request))

    def _subscribe_decided(self, allowed: bool, subscribe: m.Subscribe, match: str) -> None:
        if self.closed or self.state != OPEN:
            return
        if not allowed:
            self._error(m.Subscribe.MESSAGE_TYPE, subscribe.request, NOT_AUTHORIZED,
                        f"{self.authrole} {self.authid} may not subscribe to "
                        f"{subscribe.topic} ({match})")
            return
        subscription = self.broker.subscribe(self, subscribe.topic, match)
        self.channel.send_message(m.Subscribed(subscribe.request, subscription.id))
        if subscribe.get_retained:
            for event in self.broker.retained_for(self, subscription):
                self.channel.send_event(event)

    def _authorizer_failed(self, failure: Failure, request_type: int, request: int) -> None:
        log.failure("authorizing a request of session {session} failed", failure,
                    session=self.session_id)
        if not self.closed:
            self._error(request_type, request, "wamp.error.authorization_failed",
                        "the request could not be authorized right now; try again")

    def _unsubscribe(self, unsubscribe: m.Unsubscribe) -> None:
        if self.broker.unsubscribe(self, unsubscribe.subscription) is None:
            self._error(m.Unsubscribe.MESSAGE_TYPE, unsubscribe.request,
                        "wamp.error.no_such_subscription",
                        f"this session holds no subscription {unsubscribe.subscription}")
            return
        self.channel.send_message(m.Unsubscribed(unsubscribe.request))

    def _publish(self, publish: m.Publish) -> None:
        if self.state != OPEN:
            return
        if publish.topic.startswith("wamp."):
            self._publish_refused(publish, "the wamp. topics are the router's own")
            return
        assert self.authorizer is not None  # noqa: S101 - set in WELCOME
        d = self.authorizer.authorize("publish", publish.topic)
        d.addCallbacks(self._publish_decided, self._authorizer_failed,
                       callbackArgs=(publish,),
                       errbackArgs=(m.Publish.MESSAGE_TYPE, publish.request))

    def _publish_refused(self, publish: m.Publish, text: str) -> None:
        if publish.acknowledge:
            self._error(m.Publish.MESSAGE_TYPE, publish.request, NOT_AUTHORIZED, text)

    def _publish_decided(self, allowed: bool, publish: m.Publish) -> None:
        if self.closed or self.state != OPEN:
            return
        if not allowed:
            self._publish_refused(publish, f"{self.authrole} {self.authid} may not publish "
                                           f"to {publish.topic}")
            return
        publication = self.broker.publish(
            publish.topic, publish.args, publish.kwargs, publisher=self,
            exclude_me=publish.exclude_me is not False,
            exclude=_frozen(publish.exclude), exclude_authid=_frozen(publish.exclude_authid),
            exclude_authrole=_frozen(publish.exclude_authrole),
            eligible=_frozen(publish.eligible), eligible_authid=_frozen(publish.eligible_authid),
            eligible_authrole=_frozen(publish.eligible_authrole),
            retain=bool(publish.retain),
        )
        if publish.acknowledge:
            self.channel.send_message(m.Published(publish.request, publication.id))

    def _call(self, call: m.Call) -> None:
        if call.procedure == REAUTHENTICATE:
            self._reauthenticate(call)
            return
        procedure = META_PROCEDURES.get(call.procedure)
        if procedure is None:
            self._error(m.Call.MESSAGE_TYPE, call.request, "wamp.error.no_such_procedure",
                        f"no procedure {call.procedure}: this router answers only its meta "
                        "procedures (wamp.session.*, wamp.subscription.*) and routes no RPC")
            return
        assert self.authorizer is not None  # noqa: S101 - set in WELCOME
        d = self.authorizer.authorize("call", call.procedure)
        d.addCallbacks(self._call_decided, self._authorizer_failed,
                       callbackArgs=(call, procedure),
                       errbackArgs=(m.Call.MESSAGE_TYPE, call.request))

    def _call_decided(self, allowed: bool, call: m.Call, procedure: Any) -> None:
        if self.closed:
            return
        if not allowed:
            self._error(m.Call.MESSAGE_TYPE, call.request, NOT_AUTHORIZED,
                        f"{self.authrole} {self.authid} may not call {call.procedure}")
            return
        try:
            result = procedure(self.broker, list(call.args or []), dict(call.kwargs or {}))
        except MetaError as e:
            self._error(m.Call.MESSAGE_TYPE, call.request, e.uri, e.message)
            return
        self.channel.send_message(m.Result(call.request, args=[result]))

    def _reauthenticate(self, call: m.Call) -> None:
        """A new access token for the same user extends the session past the old one's
        expiry (the WAMP session itself has no re-authentication)."""
        token = call.args[0] if call.args else None
        d = self.gatekeeper.verify_ticket(token)

        def verified(identity: Identity) -> None:
            if self.closed:
                return
            if identity.authid != self.authid:
                self._error(m.Call.MESSAGE_TYPE, call.request, NOT_AUTHORIZED,
                            "the new token belongs to another user")
                return
            self.identity = identity
            if self.authorizer is not None:
                self.authorizer.principal = identity.principal
            self.watch_expiry(identity)
            self.channel.send_message(
                m.Result(call.request, args=[{"expiresAt": identity.expires_at}]))

        def refused(failure: Failure) -> None:
            if not self.closed:
                self._error(m.Call.MESSAGE_TYPE, call.request,
                            "wamp.error.authentication_failed", failure.getErrorMessage())

        d.addCallbacks(verified, refused)

    def _register(self, register: m.Register) -> None:
        self._error(m.Register.MESSAGE_TYPE, register.request, "wamp.error.feature_not_supported",
                    "this router routes no RPC: procedures cannot be registered")

    def _unregister(self, unregister: m.Unregister) -> None:
        self._error(m.Unregister.MESSAGE_TYPE, unregister.request,
                    "wamp.error.no_such_registration", "nothing is registered here")

    def _ignore(self, message: Any) -> None:
        pass

    _OPEN_HANDLERS: dict[type, Any] = {
        m.Goodbye: _goodbye,
        m.Subscribe: _subscribe,
        m.Unsubscribe: _unsubscribe,
        m.Publish: _publish,
        m.Call: _call,
        m.Register: _register,
        m.Unregister: _unregister,
        # A CANCEL can only concern a call that has been answered already.
        m.Cancel: _ignore,
    }
