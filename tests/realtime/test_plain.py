"""The plain JSON protocol on /ws (no subprotocol offered), over real sockets: the same
broker, authentication and authorization as WAMP."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.realtime.helpers import connect, connect_plain, make_token, wait_for


@pytest_twisted.ensureDeferred
async def test_auth_subscribe_event_ping(node: Any) -> None:
    """auth → welcome, subscribe → subscribed, the server's event arrives as
    {type, topic, payload, timestamp}, ping → pong."""
    service, port = node
    service.gatekeeper.access.members["p1"] = {"u1": "viewer"}
    client = await connect_plain(port)
    client.send({"type": "auth", "token": make_token("u1")})
    welcome = await client.next("welcome")
    assert welcome["authid"] == "u1"
    assert welcome["authrole"] == "member"
    client.send({"type": "subscribe", "topic": "installsure.project.p1.", "match": "prefix"})
    assert (await client.next("subscribed"))["topic"] == "installsure.project.p1."
    service.publish("installsure.project.p1.updated", {"name": "Tower"})
    event = await client.next("event")
    assert event["topic"] == "installsure.project.p1.updated"
    assert event["payload"] == {"name": "Tower"}
    assert event["timestamp"].endswith("Z")
    client.send({"type": "ping"})
    await client.next("pong")
    client.send({"type": "unsubscribe", "topic": "installsure.project.p1.", "match": "prefix"})
    await client.next("unsubscribed")
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_plain_and_wamp_clients_share_the_broker(node: Any) -> None:
    """A WAMP client's publication reaches a plain-protocol subscriber."""
    service, port = node
    service.gatekeeper.access.members["p1"] = {"a": "owner", "b": "viewer"}
    plain = await connect_plain(port)
    plain.send({"type": "auth", "token": make_token("b")})
    await plain.next("welcome")
    plain.send({"type": "subscribe", "topic": "installsure.presence.p1"})
    await plain.next("subscribed")
    wamp = await connect(port, make_token("a"))
    wamp.publish("installsure.presence.p1", {"cursor": [1, 2]})
    event = await plain.next("event")
    assert event["payload"] == {"cursor": [1, 2]}
    wamp.leave()
    plain.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_refusals(node: Any) -> None:
    """Subscribing before auth, to a topic one may not see, or with a bad match policy
    gets an error message and the connection stays open; a bad token closes it."""
    _service, port = node
    client = await connect_plain(port)
    client.send({"type": "subscribe", "topic": "installsure.system.health"})
    assert (await client.next("error"))["code"] == "UNAUTHENTICATED"
    client.send({"type": "auth", "token": make_token("u1")})
    await client.next("welcome")
    client.send({"type": "subscribe", "topic": "installsure.system.health"})
    assert (await client.next("error"))["code"] == "FORBIDDEN"
    client.send({"type": "subscribe", "topic": "installsure.x", "match": "regex"})
    assert (await client.next("error"))["code"] == "VALIDATION_ERROR"
    client.send({"type": "dance"})
    assert (await client.next("error"))["code"] == "BAD_REQUEST"
    client.transport.loseConnection()

    refused = await connect_plain(port)
    refused.send({"type": "auth", "token": "not-a-token"})
    assert (await refused.next("error"))["code"] == "UNAUTHENTICATED"
    code, _reason = await refused.closed
    assert code == 1008


@pytest_twisted.ensureDeferred
async def test_not_json_closes_the_connection(node: Any) -> None:
    """Text that is not a JSON object is a protocol error: an error message, then close."""
    _service, port = node
    client = await connect_plain(port)
    client.sendMessage(b"{not json")
    assert (await client.next("error"))["code"] == "BAD_REQUEST"
    code, _ = await client.closed
    assert code == 1008


@pytest_twisted.ensureDeferred
async def test_retained_progress_on_subscribe(node: Any) -> None:
    """A file's latest progress is sent right after subscribed."""
    service, port = node
    service.gatekeeper.access.members["p1"] = {"u1": "viewer"}
    service.gatekeeper.access.files["f1"] = "p1"
    service.publish("installsure.file.f1.progress", {"stage": "thumbnail", "percent": 70})
    client = await connect_plain(port)
    client.send({"type": "auth", "token": make_token("u1")})
    await client.next("welcome")
    client.send({"type": "subscribe", "topic": "installsure.file.f1.progress"})
    await client.next("subscribed")
    event = await client.next("event")
    assert event["payload"] == {"stage": "thumbnail", "percent": 70}
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_goodbye_on_shutdown(node: Any) -> None:
    """goodbye_all tells plain clients why (goodbye, system_shutdown) and closes 1001."""
    service, port = node
    client = await connect_plain(port)
    client.send({"type": "auth", "token": make_token("u1")})
    await client.next("welcome")
    await service.goodbye_all()
    assert (await client.next("goodbye"))["reason"] == "wamp.close.system_shutdown"
    code, _ = await client.closed
    assert code == 1001
    await wait_for(lambda: not service.broker.sessions)
