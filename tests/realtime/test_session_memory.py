"""The WAMP session and broker in memory: opening, ids, violations, pub/sub features,
meta API, expiry, re-authentication, revocation and goodbye (no sockets: a recording
channel on a MemoryReactorClock)."""

from __future__ import annotations

from autobahn.wamp import message as m
from autobahn.wamp.role import RolePublisherFeatures, RoleSubscriberFeatures

from installsure.realtime.lifetime import GOING_AWAY, PROTOCOL_ERROR
from installsure.realtime.subscriptions import MAX_ID
from installsure.realtime.wamp import OPEN
from tests.realtime.helpers import make_token
from tests.realtime.memory import MemoryRouter, subscribe, subscribed_id

ROLES = {"subscriber": RoleSubscriberFeatures(), "publisher": RolePublisherFeatures()}


def hello(authmethods: list[str] | None = None, realm: str = "installsure") -> m.Hello:
    return m.Hello(realm, ROLES, authmethods=authmethods)


# -- opening ------------------------------------------------------------------------------


def test_ticket_opening_welcomes_with_the_token_identity() -> None:
    """HELLO with ticket gets CHALLENGE; a valid access token gets WELCOME naming the
    token's user and role, a random session id and the broker's advanced features."""
    router = MemoryRouter()
    session, channel = router.session()
    session.received([hello(["ticket"])])
    challenge = channel.take()[0]
    assert isinstance(challenge, m.Challenge)
    assert challenge.method == "ticket"
    session.received([m.Authenticate(make_token("u1", "manager"))])
    welcome = channel.take()[0]
    assert isinstance(welcome, m.Welcome)
    assert (welcome.authid, welcome.authrole, welcome.authmethod) == ("u1", "manager", "ticket")
    assert 1 <= welcome.session <= MAX_ID
    features = welcome.roles["broker"].__dict__
    for feature in ("publisher_exclusion", "pattern_based_subscription", "event_retention",
                    "subscriber_blackwhite_listing", "session_meta_api",
                    "subscription_meta_api", "publisher_identification"):
        assert features[feature] is True, feature
    assert session.session_id in router.broker.sessions


def test_session_ids_are_random_and_distinct() -> None:
    """Session ids are drawn at random from WAMP's global id range, not counted."""
    router = MemoryRouter()
    ids = [router.joined(f"u{i}")[0].session_id for i in range(20)]
    assert len(set(ids)) == 20
    assert sorted(ids) != list(range(ids[0], ids[0] + 20))
    assert all(1 <= i <= MAX_ID for i in ids)


def test_bad_ticket_is_aborted_and_counted() -> None:
    """A forged token gets ABORT wamp.error.authentication_failed, the transport closes,
    the session never joins, and the failure is counted."""
    router = MemoryRouter()
    session, channel = router.session()
    session.received([hello(["ticket"])])
    session.received([m.Authenticate(make_token("u1", secret=b"not-the-server-secret"))])
    abort = channel.last()
    assert isinstance(abort, m.Abort)
    assert abort.reason == "wamp.error.authentication_failed"
    assert channel.closed is not None
    assert not router.broker.sessions
    assert router.stats.auth_failures == {"refused": 1}


def test_revoked_login_session_cannot_open() -> None:
    """A token whose login session was revoked is refused like a forged one."""
    router = MemoryRouter()
    router.verifier.revoked.add("gone")
    session, channel = router.session()
    session.received([hello(["ticket"])])
    session.received([m.Authenticate(make_token("u1", session_id="gone"))])
    assert isinstance(channel.last(), m.Abort)


def test_anonymous_only_where_allowed() -> None:
    """Without a ticket the session is aborted (no_auth_method) unless anonymous sessions
    are allowed; then it joins with authrole anonymous."""
    refused, refused_channel = MemoryRouter().session()
    refused.received([hello(["anonymous"])])
    assert refused_channel.last().reason == "wamp.error.no_auth_method"

    router = MemoryRouter(allow_anonymous=True)
    session, channel = router.session()
    session.received([hello(["anonymous"])])
    welcome = channel.last()
    assert isinstance(welcome, m.Welcome)
    assert welcome.authrole == "anonymous"


def test_wrong_realm_is_aborted() -> None:
    """HELLO for another realm gets ABORT wamp.error.no_such_realm."""
    session, channel = MemoryRouter().session()
    session.received([hello(["ticket"], realm="elsewhere")])
    assert channel.last().reason == "wamp.error.no_such_realm"
    assert channel.closed is not None


def test_no_hello_in_time_is_aborted() -> None:
    """A connection that never says HELLO is aborted after hello_timeout."""
    router = MemoryRouter()
    _session, channel = router.session(hello_timeout=5.0)
    router.clock.advance(4.9)
    assert channel.closed is None
    router.clock.advance(0.2)
    assert isinstance(channel.last(), m.Abort)
    assert channel.closed is not None


# -- protocol violations ----------------------------------------------------------------


def test_message_before_hello_is_a_protocol_violation() -> None:
    """SUBSCRIBE before HELLO: ABORT wamp.error.protocol_violation, close 1002, counted;
    later messages are ignored."""
    router = MemoryRouter()
    session, channel = router.session()
    session.received([m.Subscribe(1, "installsure.queue.q.status"), hello(["ticket"])])
    assert [type(x) for x in channel.sent] == [m.Abort]
    assert channel.sent[0].reason == "wamp.error.protocol_violation"
    assert channel.closed == (PROTOCOL_ERROR, "wamp.error.protocol_violation")
    assert router.stats.protocol_violations == 1


def test_router_only_messages_from_a_client_are_violations() -> None:
    """A client sending EVENT (a message only routers send) in an open session is
    aborted, and leaves the broker once its connection goes."""
    router = MemoryRouter()
    session, channel = router.joined("u1")
    session.received([m.Event(1, 2)])
    assert channel.last().reason == "wamp.error.protocol_violation"
    session.connection_lost()
    assert session.session_id not in router.broker.sessions


def test_second_hello_is_a_violation() -> None:
    """HELLO in an open session breaks the protocol."""
    session, channel = MemoryRouter().joined("u1")
    session.received([hello(["ticket"])])
    assert channel.last().reason == "wamp.error.protocol_violation"


# -- subscriptions and ids ----------------------------------------------------------------


def test_one_subscription_id_per_topic_and_match_shared_by_subscribers() -> None:
    """Two sessions subscribing to the same URI and policy share one subscription id; the
    same URI with another policy is another subscription."""
    router = MemoryRouter()
    a, a_channel = router.joined("a", "admin")
    b, b_channel = router.joined("b", "admin")
    first = subscribed_id(subscribe(a, a_channel, "installsure.queue.q.status"))
    second = subscribed_id(subscribe(b, b_channel, "installsure.queue.q.status"))
    prefix = subscribed_id(subscribe(b, b_channel, "installsure.queue.", match="prefix",
                                     request=2))
    assert first == second != prefix
    assert len(router.broker.subscriptions) == 2


def test_request_ids_are_echoed_per_session() -> None:
    """Replies carry the client's own request id (session scope)."""
    router = MemoryRouter()
    session, channel = router.joined("a", "admin")
    replies = subscribe(session, channel, "installsure.queue.q.status", request=41)
    assert replies[0].request == 41


def test_unauthorized_subscription_gets_an_error() -> None:
    """A member may not subscribe to queue topics: ERROR wamp.error.not_authorized."""
    router = MemoryRouter()
    session, channel = router.joined("u1", "member")
    error = subscribe(session, channel, "installsure.queue.q.status")[0]
    assert isinstance(error, m.Error)
    assert error.error == "wamp.error.not_authorized"
    assert len(router.broker.subscriptions) == 0


def test_membership_decides_project_topics_and_is_cached() -> None:
    """A project member may subscribe to its project's topics (exact and prefix), a
    non-member may not, and the membership check is asked once per topic per session."""
    router = MemoryRouter()
    router.access.members["p1"] = {"u1": "viewer"}
    member, member_channel = router.joined("u1")
    other, other_channel = router.joined("u2")
    assert isinstance(subscribe(member, member_channel, "installsure.project.p1.updated")[0],
                      m.Subscribed)
    assert isinstance(subscribe(member, member_channel, "installsure.project.p1.",
                                match="prefix", request=2)[0], m.Subscribed)
    asked = router.access.asked
    subscribe(member, member_channel, "installsure.project.p1.updated", request=3)
    assert router.access.asked == asked
    assert isinstance(subscribe(other, other_channel, "installsure.project.p1.updated")[0],
                      m.Error)


def test_user_topic_is_only_for_that_user() -> None:
    """installsure.user.<id>.notification is open to that user alone."""
    router = MemoryRouter()
    session, channel = router.joined("u1")
    assert isinstance(subscribe(session, channel, "installsure.user.u1.notification")[0],
                      m.Subscribed)
    assert isinstance(subscribe(session, channel, "installsure.user.u2.notification",
                                request=2)[0], m.Error)


def test_unsubscribe_and_unknown_subscription() -> None:
    """UNSUBSCRIBE of a held subscription answers UNSUBSCRIBED and deletes it when it was
    the last subscriber; an unknown id gets wamp.error.no_such_subscription."""
    router = MemoryRouter()
    session, channel = router.joined("a", "admin")
    sub = subscribed_id(subscribe(session, channel, "installsure.queue.q.status"))
    session.received([m.Unsubscribe(2, sub)])
    assert isinstance(channel.take()[0], m.Unsubscribed)
    assert len(router.broker.subscriptions) == 0
    session.received([m.Unsubscribe(3, sub)])
    assert channel.take()[0].error == "wamp.error.no_such_subscription"


# -- publishing -------------------------------------------------------------------------


def presence_router() -> MemoryRouter:
    router = MemoryRouter()
    router.access.members["p1"] = {"a": "owner", "b": "editor", "c": "viewer"}
    return router


def test_acknowledged_publish_and_publisher_exclusion() -> None:
    """An acknowledged publish gets PUBLISHED with a random publication id; the publisher
    does not receive its own event unless it says exclude_me false."""
    router = presence_router()
    a, a_channel = router.joined("a")
    b, b_channel = router.joined("b")
    subscribe(a, a_channel, "installsure.presence.p1")
    subscribe(b, b_channel, "installsure.presence.p1")
    a.received([m.Publish(7, "installsure.presence.p1", args=["here"], acknowledge=True)])
    published = a_channel.take()
    assert [type(x) for x in published] == [m.Published]
    assert published[0].request == 7
    assert 1 <= published[0].publication <= MAX_ID
    event = b_channel.take()[0]
    assert isinstance(event, m.Event)
    assert event.args == ["here"]
    assert event.publication == published[0].publication
    a.received([m.Publish(8, "installsure.presence.p1", args=["me too"], exclude_me=False)])
    assert [x.args for x in a_channel.take()] == [["me too"]]


def test_unauthorized_publish_is_refused_when_acknowledged() -> None:
    """Publishing where rules do not allow: ERROR if acknowledged, nothing delivered; a
    client may never publish on wamp. topics."""
    router = presence_router()
    a, a_channel = router.joined("a")
    watcher, watcher_channel = router.joined("w", "admin")
    subscribe(watcher, watcher_channel, "installsure.project.p1.updated")
    a.received([m.Publish(1, "installsure.project.p1.updated", args=[1], acknowledge=True)])
    a.received([m.Publish(2, "wamp.session.on_join", args=[1], acknowledge=True)])
    assert [x.error for x in a_channel.take()] == ["wamp.error.not_authorized"] * 2
    assert watcher_channel.take() == []


def test_exclude_and_eligible_by_session_authid_and_authrole() -> None:
    """Black- and white-listing by session id, authid and authrole decide who gets an
    event."""
    router = MemoryRouter()
    names = ["a1", "a2", "m1"]
    peers = {n: router.joined(n, "admin" if n.startswith("a") else "manager") for n in names}
    for session, channel in peers.values():
        subscribe(session, channel, "installsure.queue.q.status")
    topic = "installsure.queue.q.status"

    def receivers(**options: object) -> list[str]:
        router.broker.publish(topic, [1], **options)  # type: ignore[arg-type]
        return sorted(n for n, (_s, c) in peers.items() if c.take())

    a1_id = peers["a1"][0].session_id
    assert receivers() == names
    assert receivers(exclude=frozenset({a1_id})) == ["a2", "m1"]
    assert receivers(exclude_authid=frozenset({"a2"})) == ["a1", "m1"]
    assert receivers(exclude_authrole=frozenset({"admin"})) == ["m1"]
    assert receivers(eligible=frozenset({a1_id})) == ["a1"]
    assert receivers(eligible_authid=frozenset({"m1", "a2"})) == ["a2", "m1"]
    assert receivers(eligible_authrole=frozenset({"admin"})) == ["a1", "a2"]


def test_publisher_disclosure_is_decided_by_the_subscribers_role() -> None:
    """Subscribers whose role is listed in disclose_publisher_to see who published; the
    others get the same event without publisher details."""
    router = MemoryRouter(disclose_to=("owner-ish", "member"))
    router.access.members["p1"] = {"a": "owner", "b": "editor", "v": "viewer"}
    a, _ = router.joined("a")
    b, b_channel = router.joined("b", "member")
    v, v_channel = router.joined("v", "viewer")
    subscribe(b, b_channel, "installsure.presence.p1")
    subscribe(v, v_channel, "installsure.presence.p1")
    a.received([m.Publish(1, "installsure.presence.p1", args=["hi"])])
    disclosed, hidden = b_channel.take()[0], v_channel.take()[0]
    assert (disclosed.publisher, disclosed.publisher_authid) == (a.session_id, "a")
    assert disclosed.publisher_authrole == "member"
    assert (hidden.publisher, hidden.publisher_authid, hidden.publisher_authrole) == (
        None, None, None)


def test_prefix_and_wildcard_subscriptions_receive_with_the_topic() -> None:
    """Prefix and wildcard subscriptions receive matching events, with the concrete topic
    in the details; non-matching topics do not reach them."""
    router = MemoryRouter()
    admin, channel = router.joined("a", "admin")
    prefix = subscribed_id(subscribe(admin, channel, "installsure.project.p1.", match="prefix"))
    wildcard = subscribed_id(subscribe(admin, channel, "installsure.project..updated",
                                       match="wildcard", request=2))
    router.broker.publish("installsure.project.p1.updated", [1])
    router.broker.publish("installsure.project.p2.updated", [2])
    router.broker.publish("installsure.project.p2.deleted", [3])
    got = sorted((e.subscription, e.topic, e.args[0]) for e in channel.take())
    assert got == sorted([(prefix, "installsure.project.p1.updated", 1),
                          (wildcard, "installsure.project.p1.updated", 1),
                          (wildcard, "installsure.project.p2.updated", 2)])


def test_retained_event_is_sent_to_a_new_subscriber() -> None:
    """A retained publication is given at once (marked retained) to a subscriber that
    asks with get_retained; one that does not ask gets nothing until the next event."""
    router = MemoryRouter()
    router.access.files["f1"] = "p1"
    router.access.members["p1"] = {"u1": "viewer"}
    router.broker.publish("installsure.file.f1.progress", [{"percent": 40}], retain=True)
    router.broker.publish("installsure.file.f1.progress", [{"percent": 60}], retain=True)
    session, channel = router.joined("u1")
    replies = subscribe(session, channel, "installsure.file.f1.progress", get_retained=True)
    assert isinstance(replies[0], m.Subscribed)
    assert [(e.args, e.retained) for e in replies[1:]] == [([{"percent": 60}], True)]
    other, other_channel = router.joined("u1")
    assert len(subscribe(other, other_channel, "installsure.file.f1.progress")) == 1


def test_retained_events_expire() -> None:
    """A retained event older than retained_ttl is not served, and pruning forgets
    expired ones while keeping fresh ones."""
    router = MemoryRouter()
    router.broker.retained_ttl = 60.0
    router.broker.publish("installsure.queue.q.status", [1], retain=True)
    router.broker.publish("installsure.queue.r.status", [1], retain=True)
    router.clock.advance(61)
    router.broker.publish("installsure.queue.s.status", [1], retain=True)
    session, channel = router.joined("a", "admin")
    assert len(subscribe(session, channel, "installsure.queue.q.status",
                         get_retained=True)) == 1
    assert router.broker.prune_retained() == 1
    assert list(router.broker.retained) == ["installsure.queue.s.status"]
    replies = subscribe(session, channel, "installsure.queue.", match="prefix",
                        get_retained=True, request=2)
    assert [e.topic for e in replies[1:]] == ["installsure.queue.s.status"]


# -- meta -----------------------------------------------------------------------------------


def test_session_and_subscription_meta_events() -> None:
    """An admin watching wamp.session. and wamp.subscription. sees joins, leaves, and
    subscriptions being created, subscribed, unsubscribed and deleted."""
    router = MemoryRouter()
    admin, channel = router.joined("admin", "admin")
    subscribe(admin, channel, "wamp.session.", match="prefix")
    subscribe(admin, channel, "wamp.subscription.", match="prefix", request=2)
    other, other_channel = router.joined("a2", "admin")
    sub = subscribed_id(subscribe(other, other_channel, "installsure.queue.q.status"))
    other.received([m.Unsubscribe(2, sub)])
    other.connection_lost()
    topics = [e.topic for e in channel.take()]
    assert topics == ["wamp.session.on_join", "wamp.subscription.on_create",
                      "wamp.subscription.on_subscribe", "wamp.subscription.on_unsubscribe",
                      "wamp.subscription.on_delete", "wamp.session.on_leave"]


def call(session: object, channel: object, procedure: str, *args: object,
         request: int = 1) -> object:
    session.received([m.Call(request, procedure, args=list(args))])  # type: ignore[attr-defined]
    return channel.take()[0]  # type: ignore[attr-defined]


def test_meta_procedures_are_answered_by_the_router() -> None:
    """wamp.session.count/list/get and wamp.subscription.list/lookup/match/get/
    count_subscribers describe the broker's real state."""
    router = MemoryRouter()
    admin, channel = router.joined("admin", "admin")
    member, member_channel = router.joined("u1", "member")
    sub = subscribed_id(subscribe(admin, channel, "installsure.queue.q.status"))
    assert call(admin, channel, "wamp.session.count").args == [2]
    assert call(admin, channel, "wamp.session.count", ["member"]).args == [1]
    assert sorted(call(admin, channel, "wamp.session.list").args[0]) == sorted(
        [admin.session_id, member.session_id])
    details = call(admin, channel, "wamp.session.get", member.session_id).args[0]
    assert (details["authid"], details["authrole"]) == ("u1", "member")
    assert call(admin, channel, "wamp.subscription.list").args[0]["exact"] == [sub]
    assert call(admin, channel, "wamp.subscription.lookup",
                "installsure.queue.q.status").args == [sub]
    assert call(admin, channel, "wamp.subscription.match",
                "installsure.queue.q.status").args == [[sub]]
    assert call(admin, channel, "wamp.subscription.get", sub).args[0]["uri"] == (
        "installsure.queue.q.status")
    assert call(admin, channel, "wamp.subscription.count_subscribers", sub).args == [1]
    assert call(admin, channel, "wamp.session.get", 12345).error == "wamp.error.no_such_session"
    refused = call(member, member_channel, "wamp.session.list")
    assert refused.error == "wamp.error.not_authorized"


def test_rpc_is_out_of_scope_with_clear_errors() -> None:
    """REGISTER and CALL of a procedure that is not a meta procedure get WAMP errors that
    say this router routes no RPC."""
    session, channel = MemoryRouter().joined("u1")
    session.received([m.Register(1, "com.example.add")])
    error = channel.take()[0]
    assert error.error == "wamp.error.feature_not_supported"
    assert "RPC" in error.args[0]
    reply = call(session, channel, "com.example.add", 1, 2, request=2)
    assert reply.error == "wamp.error.no_such_procedure"
    assert "RPC" in reply.args[0]


# -- lifetime ----------------------------------------------------------------------------


def test_expired_token_ends_the_session_with_goodbye_expired() -> None:
    """When the ticket's token expires the session gets GOODBYE wamp.close.expired and
    the transport closes after the close timeout if the client does not answer."""
    router = MemoryRouter()
    _session, channel = router.joined("u1", ttl=30)
    router.clock.advance(31)
    goodbye = channel.last()
    assert isinstance(goodbye, m.Goodbye)
    assert goodbye.reason == "wamp.close.expired"
    router.clock.advance(3)
    assert channel.closed is not None


def test_reauthentication_extends_the_session() -> None:
    """Calling installsure.session.reauthenticate with a fresh token of the same user
    moves the expiry; a token of another user is refused."""
    router = MemoryRouter()
    session, channel = router.joined("u1", ttl=30)
    reply = call(session, channel, "installsure.session.reauthenticate",
                 make_token("u1", ttl=600))
    assert isinstance(reply, m.Result)
    assert reply.args[0]["expiresAt"] > 500
    refused = call(session, channel, "installsure.session.reauthenticate",
                   make_token("u2", ttl=600), request=2)
    assert refused.error == "wamp.error.not_authorized"
    router.clock.advance(100)
    assert session.state == OPEN
    assert channel.closed is None


def test_client_goodbye_is_answered_and_closes() -> None:
    """A client's GOODBYE gets GOODBYE wamp.close.goodbye_and_out and a closed transport."""
    session, channel = MemoryRouter().joined("u1")
    session.received([m.Goodbye()])
    assert channel.last().reason == "wamp.close.goodbye_and_out"
    assert channel.closed is not None


def test_goodbye_all_says_system_shutdown_and_closes_1001() -> None:
    """goodbye_all: every session gets GOODBYE wamp.close.system_shutdown; on the
    client's GOODBYE the WebSocket closes with 1001; the Deferred fires once all are
    gone."""
    router = MemoryRouter()
    peers = [router.joined(f"u{i}") for i in range(3)]
    done = router.broker.goodbye_all("wamp.close.system_shutdown")
    for session, channel in peers:
        assert channel.last().reason == "wamp.close.system_shutdown"
        session.received([m.Goodbye()])
        assert channel.closed == (GOING_AWAY, "")
    assert not done.called
    for session, _channel in peers:
        session.connection_lost()
    assert done.called
    assert not router.broker.sessions


def test_nothing_follows_the_routers_goodbye_but_the_close() -> None:
    """Once the router has said GOODBYE, events and subscription revocations are no
    longer sent to that session (a WAMP client treats a message after GOODBYE as a
    protocol error and drops the connection without the close code)."""
    router = MemoryRouter()
    session, channel = router.joined("a", "admin")
    sub = subscribed_id(subscribe(session, channel, "installsure.system.health"))
    router.broker.publish("installsure.system.health", [{"status": "ok"}])
    assert [e.subscription for e in channel.of(m.Event)] == [sub]
    router.broker.goodbye_all("wamp.close.system_shutdown")
    channel.take()
    router.broker.publish("installsure.system.health", [{"status": "stopping"}])
    for subscription in router.broker.held_by(session):
        router.broker.revoke(session, subscription, "wamp.subscription.revoked")
    assert channel.take() == []
    session.received([m.Goodbye()])
    assert [type(message) for message in channel.take()] == []
    assert channel.closed == (GOING_AWAY, "")


def test_membership_removed_revokes_subscriptions() -> None:
    """After the member is removed and the cache dropped, re-checking revokes the
    subscription: UNSUBSCRIBED with reason wamp.subscription.revoked, no more events."""
    router = MemoryRouter()
    router.access.members["p1"] = {"u1": "editor"}
    session, channel = router.joined("u1")
    sub = subscribed_id(subscribe(session, channel, "installsure.project.p1.updated"))
    del router.access.members["p1"]["u1"]
    assert session.authorizer is not None
    session.authorizer.forget()
    for subscription in router.broker.held_by(session):
        d = session.authorizer.authorize("subscribe", subscription.uri, subscription.match)
        assert d.result is False
        router.broker.revoke(session, subscription, "wamp.subscription.revoked")
    revoked = channel.take()[0]
    assert isinstance(revoked, m.Unsubscribed)
    assert (revoked.request, revoked.subscription, revoked.reason) == (
        0, sub, "wamp.subscription.revoked")
    router.broker.publish("installsure.project.p1.updated", [1])
    assert channel.take() == []
