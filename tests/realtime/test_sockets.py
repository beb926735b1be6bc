"""Real autobahn|Python clients over real sockets, through the real HTTP site: every
serializer, both HTTP wires, pattern subscriptions, acknowledged publish, drain."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import treq
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from tests.realtime.helpers import connect, make_token, wait_for

SERIALIZERS = ["json", "json.batched", "msgpack", "msgpack.batched", "cbor", "cbor.batched"]


def members(service: Any, project: str, **roles: str) -> None:
    service.gatekeeper.access.members[project] = dict(roles)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest_twisted.ensureDeferred
async def test_every_serializer_subscribes_publishes_and_receives(node: Any,
                                                                  serializer: str) -> None:
    """With each serializer: a member subscribes to its project's presence topic, another
    publishes with acknowledgement and gets the publication id, the subscriber receives
    the payload with the publisher disclosed, and the server's own publication arrives."""
    service, port = node
    members(service, "p1", a="owner", b="editor")
    a = await connect(port, make_token("a"), serializer=serializer)
    b = await connect(port, make_token("b"), serializer=serializer)
    await a.subscribe(a.record, "installsure.presence.p1",
                      options=SubscribeOptions(details=True))
    await a.subscribe(a.record, "installsure.project.p1.updated",
                      options=SubscribeOptions(details=True))
    publication = await b.publish("installsure.presence.p1", {"here": True},
                                  options=PublishOptions(acknowledge=True))
    assert publication.id > 0
    service.publish("installsure.project.p1.updated", {"name": "Tower"})
    await wait_for(lambda: len(a.events) == 2)
    (_t1, args1, _k1, details1), (_t2, args2, _k2, details2) = a.events
    assert args1 == [{"here": True}]
    assert details1.publisher_authid == "b"
    assert args2 == [{"name": "Tower"}]
    assert details2.publisher is None
    a.leave()
    b.leave()


@pytest_twisted.ensureDeferred
async def test_both_http_wires_hand_over_to_websocket(wire_node: Any) -> None:
    """The fast and the stock HTTP wire both hand a /ws upgrade to the broker, and the
    connection leaves the HTTP connection tracker (an HTTP drain does not wait for it)."""
    service, port = wire_node
    client = await connect(port, make_token("a", "admin"))
    await client.subscribe(client.record, "installsure.system.health")
    service.publish("installsure.system.health", {"ok": True})
    await wait_for(lambda: client.events)
    assert client.events[0][1] == [{"ok": True}]
    client.leave()


@pytest_twisted.ensureDeferred
async def test_prefix_and_wildcard_subscriptions_over_the_wire(node: Any) -> None:
    """A prefix subscription to one project and a wildcard one across projects receive
    the concrete topics in their event details."""
    service, port = node
    admin = await connect(port, make_token("adm", "admin"))
    await admin.subscribe(admin.record, "installsure.project.p1.",
                          options=SubscribeOptions(match="prefix", details=True))
    await admin.subscribe(admin.record, "installsure.project..updated",
                          options=SubscribeOptions(match="wildcard", details=True))
    service.publish("installsure.project.p1.member", {"userId": "u"})
    service.publish("installsure.project.p2.updated", {"name": "x"})
    await wait_for(lambda: len(admin.events) == 2)
    assert sorted(e[0] for e in admin.events) == ["installsure.project.p1.member",
                                                  "installsure.project.p2.updated"]
    admin.leave()


@pytest_twisted.ensureDeferred
async def test_refusals_reach_the_client_as_wamp_errors(node: Any) -> None:
    """A non-member's subscription and any REGISTER or CALL of a non-meta procedure are
    refused with WAMP errors the client library raises."""
    _service, port = node
    client = await connect(port, make_token("nobody"))
    with pytest.raises(ApplicationError) as refused:
        await client.subscribe(client.record, "installsure.project.p9.updated")
    assert refused.value.error == "wamp.error.not_authorized"
    with pytest.raises(ApplicationError) as no_rpc:
        await client.register(lambda: 1, "com.example.one")
    assert no_rpc.value.error == "wamp.error.feature_not_supported"
    with pytest.raises(ApplicationError) as no_call:
        await client.call("com.example.one")
    assert no_call.value.error == "wamp.error.no_such_procedure"
    client.leave()


@pytest_twisted.ensureDeferred
async def test_bad_ticket_never_joins(node: Any) -> None:
    """A forged ticket: the client's join fails with authentication_failed."""
    _service, port = node
    with pytest.raises(RuntimeError, match="authentication_failed"):
        await connect(port, make_token("a", secret=b"forged-secret-forged-secret-forged!"))


@pytest_twisted.ensureDeferred
async def test_drain_goodbye_reaches_clients_with_close_1001(node: Any) -> None:
    """goodbye_all: each client hears GOODBYE wamp.close.system_shutdown and the
    WebSocket closes with 1001; the Deferred fires once every session is gone."""
    service, port = node
    clients = [await connect(port, make_token(f"u{i}")) for i in range(3)]
    codes: list[Any] = []
    for client in clients:
        protocol = client._transport
        original = protocol.onClose

        def on_close(was_clean: bool, code: Any, reason: Any, original: Any = original,
                     protocol: Any = protocol) -> None:
            # The close code the server sent (a loaded machine may make the TCP close
            # itself look unclean to the client, which then reports 1006).
            codes.append(protocol.remoteCloseCode)
            original(was_clean, code, reason)

        protocol.onClose = on_close
    await service.goodbye_all()
    assert not service.broker.sessions
    await wait_for(lambda: len(codes) == 3)
    assert codes == [1001, 1001, 1001]
    assert {c.goodbye.reason for c in clients} == {"wamp.close.system_shutdown"}


@pytest_twisted.ensureDeferred
async def test_plain_http_on_ws_gets_426_envelope(node: Any) -> None:
    """GET /ws without an upgrade: 426 with the API's error envelope and a request id."""
    _service, port = node
    response = await treq.get(f"http://127.0.0.1:{port}/ws")
    body = json.loads(await response.content())
    assert response.code == 426
    assert body["success"] is False
    assert body["code"] == "UPGRADE_REQUIRED"
    assert body["requestId"]
