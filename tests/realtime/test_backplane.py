"""Two (or three) broker nodes sharing one real Redis, as separate processes would:
events cross once per subscription, retained events are served by any node, and the
domain's signals (session revoked, membership changed) act on every node."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest_twisted

from installsure.auth.interfaces import MEMBERSHIP_CHANGED_CHANNEL, SESSION_REVOKED_CHANNEL
from tests.realtime.helpers import (
    RawClient,
    connect,
    connect_plain,
    make_token,
    sleep,
    wait_for,
)


async def two_nodes(make_node: Any) -> tuple[Any, Any]:
    a, b = make_node(), make_node()
    await a[0].backplane.ready
    await b[0].backplane.ready
    return a, b


@pytest_twisted.ensureDeferred
async def test_event_published_on_one_node_reaches_both_once(make_node: Any) -> None:
    """The server publishes on node A: subscribers on A and on B each get it exactly once
    (A delivers its own at once and ignores its echo from Redis)."""
    (a, a_port), (_b, b_port) = await two_nodes(make_node)
    on_a = await connect(a_port, make_token("x", "admin"))
    on_b = await connect(b_port, make_token("y", "admin"))
    for client in (on_a, on_b):
        await client.subscribe(client.record, "installsure.queue.q.job")
    for n in range(5):
        a.publish("installsure.queue.q.job", {"n": n})
    await wait_for(lambda: len(on_b.events) == 5)
    await sleep(0.2)  # any duplicate would have arrived by now
    assert [e[1][0]["n"] for e in on_a.events] == list(range(5))
    assert [e[1][0]["n"] for e in on_b.events] == list(range(5))
    on_a.leave()
    on_b.leave()


@pytest_twisted.ensureDeferred
async def test_client_publication_crosses_with_its_options(make_node: Any) -> None:
    """A client's publication on A reaches B's subscribers with its exclusion list and
    publisher disclosure intact."""
    (a, a_port), (b, b_port) = await two_nodes(make_node)
    for service in (a, b):
        service.gatekeeper.access.members["p1"] = {"pub": "owner", "s1": "viewer",
                                                   "s2": "viewer"}
    publisher = await connect(a_port, make_token("pub"))
    s1 = await connect(b_port, make_token("s1"))
    s2 = await connect(b_port, make_token("s2"))
    from autobahn.wamp.types import PublishOptions, SubscribeOptions

    for client in (s1, s2):
        await client.subscribe(client.record, "installsure.presence.p1",
                               options=SubscribeOptions(details=True))
    await publisher.publish("installsure.presence.p1", "hello",
                            options=PublishOptions(acknowledge=True, exclude_authid=["s2"]))
    await wait_for(lambda: s1.events)
    await sleep(0.2)
    assert s2.events == []
    assert s1.events[0][3].publisher_authid == "pub"
    for client in (publisher, s1, s2):
        client.leave()


@pytest_twisted.ensureDeferred
async def test_retained_event_is_served_by_a_node_started_later(make_node: Any) -> None:
    """File progress published (retained) on A is served at once to a subscriber of a
    node that started after it, from Redis."""
    a, _a_port = make_node()
    await a.backplane.ready
    a.publish("installsure.file.f1.progress", {"stage": "parse", "percent": 30})
    a.publish("installsure.file.f1.progress", {"stage": "parse", "percent": 55})
    await sleep(0.2)
    late, late_port = make_node()
    await late.backplane.ready
    late.gatekeeper.access.members["p1"] = {"u1": "viewer"}
    late.gatekeeper.access.files["f1"] = "p1"
    client = await connect_plain(late_port)
    client.send({"type": "auth", "token": make_token("u1")})
    await client.next("welcome")
    client.send({"type": "subscribe", "topic": "installsure.file.f1.progress"})
    await client.next("subscribed")
    assert (await client.next("event"))["payload"]["percent"] == 55
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_revoked_login_session_closes_on_every_node_within_a_second(
    make_node: Any,
) -> None:
    """Logout on one node (the domain publishes the session id on the revoked channel):
    WAMP sessions opened with that login session close on both nodes within 1 s, others
    stay."""
    (a, a_port), (b, b_port) = await two_nodes(make_node)
    gone_a = await connect(a_port, make_token("u1", session_id="login-1"))
    gone_b = await connect(b_port, make_token("u1", session_id="login-1"))
    stays = await connect(b_port, make_token("u1", session_id="login-2"))
    started = time.monotonic()
    await a.redis.publish(SESSION_REVOKED_CHANNEL, "login-1")
    await gone_a.left
    await gone_b.left
    assert time.monotonic() - started < 1.0
    assert gone_b.goodbye.reason == "installsure.close.revoked"
    await sleep(0.1)
    assert [p.authid for p in b.broker.sessions.values()] == ["u1"]
    assert stays.is_attached()
    stays.leave()


async def raw_wamp_member(port: int, user: str) -> Any:
    """A WAMP client spoken by hand over wamp.2.json, announcing subscription revocation
    (autobahn|Python announces it but fails on the router's UNSUBSCRIBED)."""
    client = await connect_plain(port, protocols=["wamp.2.json"], client=RawClient)
    roles = {"subscriber": {"features": {"subscription_revocation": True}}}
    client.sendMessage(json.dumps([1, "installsure", {"roles": roles,
                                                      "authmethods": ["ticket"]}]).encode())
    await wait_for(lambda: client.raw)
    client.sendMessage(json.dumps([5, make_token(user), {}]).encode())
    await wait_for(lambda: len(client.raw) == 2)
    assert json.loads(client.raw[1])[0] == 2, client.raw  # WELCOME
    client.raw.clear()
    return client


@pytest_twisted.ensureDeferred
async def test_removed_member_stops_receiving(make_node: Any) -> None:
    """A member removed while subscribed: on the "membership changed" signal (sent from
    another node) the subscriber's node re-checks and revokes the subscription (WAMP:
    UNSUBSCRIBED with request 0 and reason wamp.subscription.revoked; plain protocol:
    unsubscribed with that reason), and the next event reaches only remaining members."""
    (a, _a_port), (b, b_port) = await two_nodes(make_node)
    b.gatekeeper.access.members["p1"] = {"u1": "editor", "u2": "viewer"}
    wamp = await raw_wamp_member(b_port, "u1")
    wamp.sendMessage(json.dumps([32, 1, {}, "installsure.project.p1.updated"]).encode())
    await wait_for(lambda: wamp.raw)
    subscribed = json.loads(wamp.raw.pop())
    assert subscribed[0] == 33
    plain = await connect_plain(b_port)
    plain.send({"type": "auth", "token": make_token("u1")})
    await plain.next("welcome")
    plain.send({"type": "subscribe", "topic": "installsure.project.p1.updated"})
    await plain.next("subscribed")
    remains = await connect(b_port, make_token("u2"))
    await remains.subscribe(remains.record, "installsure.project.p1.updated")

    del b.gatekeeper.access.members["p1"]["u1"]
    await a.redis.publish(MEMBERSHIP_CHANGED_CHANNEL, json.dumps(
        {"projectId": "p1", "userId": "u1", "change": "removed", "role": None}))
    await wait_for(lambda: wamp.raw)
    assert json.loads(wamp.raw.pop()) == [
        35, 0, {"subscription": subscribed[2], "reason": "wamp.subscription.revoked"}]
    assert (await plain.next("unsubscribed"))["reason"] == "wamp.subscription.revoked"

    a.publish("installsure.project.p1.updated", {"name": "new"})
    await wait_for(lambda: remains.events)
    await sleep(0.2)
    assert wamp.raw == []
    assert not [m for m in plain.received if m["type"] == "event"]
    remains.leave()
    wamp.transport.loseConnection()
    plain.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_backplane_survives_a_redis_restart(make_node: Any, redis_server: Any) -> None:
    """While Redis is down, events still reach local subscribers and the ones for other
    nodes are counted as dropped; after Redis is back the nodes subscribe again and
    events cross again."""
    (a, a_port), (_b, b_port) = await two_nodes(make_node)
    local = await connect(a_port, make_token("x", "admin"))
    remote = await connect(b_port, make_token("y", "admin"))
    for client in (local, remote):
        await client.subscribe(client.record, "installsure.system.health")
    redis_server.kill()
    dropped = a.broker.stats.dropped.get("backplane_down", 0)
    a.publish("installsure.system.health", {"during": True})
    await wait_for(lambda: local.events)
    await wait_for(lambda: a.broker.stats.dropped.get("backplane_down", 0) > dropped)
    redis_server.start()

    async def crossed() -> bool:
        a.publish("installsure.system.health", {"after": True})
        await sleep(0.3)
        return any(e[1][0].get("after") for e in remote.events)

    deadline = time.monotonic() + 30
    while not await crossed():
        assert time.monotonic() < deadline, "events did not cross after Redis came back"
    assert not any(e[1][0].get("during") for e in remote.events)
    local.leave()
    remote.leave()
