"""Hostile and careless clients over real sockets: fuzzing, protocol violations, limits,
origins, connection caps and slow consumers. The offender is cut off, the server goes on
serving the others, memory stays bounded, and nothing is logged as a traceback."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import LogEvent, globalLogPublisher

from tests.realtime.helpers import (
    PlainClient,
    RawClient,
    connect,
    connect_plain,
    make_token,
    sleep,
    wait_for,
)


@pytest.fixture
def log_events() -> Iterator[list[LogEvent]]:
    """Every log event emitted while the test runs."""
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def tracebacks(events: list[LogEvent]) -> list[LogEvent]:
    return [e for e in events if "log_failure" in e or e.get("isError")]


HOSTILE = [
    b"",
    b"[]",
    b"{}",
    b"[1]",
    b'["x", 1]',
    b"[1, 12345]",
    b'[1, "installsure", "not a dict"]',
    b'[32, "1", {}, "topic"]',
    b"[99, 1, {}]",
    b"[16, 1, {}, 3]",
    b'[1, "installsure", {"roles": {"subscriber": {}}}, 5]',
    b'[36, 1, 2, {}]',
    b"\xff\xfe\x00",
    b"[" * 5000,
    json.dumps([1, "installsure", {"roles": {"subscriber": {}},
                                   "authmethods": "ticket"}]).encode(),
]


@pytest_twisted.ensureDeferred
async def test_fuzzing_aborts_only_the_offender(node: Any, log_events: list[LogEvent]) -> None:
    """Random bytes, malformed and out-of-place WAMP messages on wamp.2.json and
    wamp.2.msgpack: each offending session is aborted with protocol_violation or closed,
    a well-behaved client keeps receiving, and no traceback is logged."""
    service, port = node
    watcher = await connect(port, make_token("w", "admin"))
    await watcher.subscribe(watcher.record, "installsure.system.health")
    rng = random.Random(10)
    payloads = HOSTILE + [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
                          for _ in range(25)]
    for index, payload in enumerate(payloads):
        subprotocol = "wamp.2.json" if index % 2 == 0 else "wamp.2.msgpack"
        client = await connect_plain(port, protocols=[subprotocol], client=RawClient)
        client.sendMessage(payload, isBinary=subprotocol.endswith("msgpack"))
        await client.closed
    assert service.broker.stats.protocol_violations >= len(payloads) // 2
    service.publish("installsure.system.health", {"ok": True})
    await wait_for(lambda: watcher.events)
    assert not tracebacks(log_events), tracebacks(log_events)
    assert len(service.broker.sessions) == 1
    watcher.leave()


@pytest_twisted.ensureDeferred
async def test_message_over_the_size_limit_closes(make_node: Any) -> None:
    """A message larger than realtime.max_message_size closes the connection (1009)."""
    _service, port = make_node(max_message_size=1024, max_frame_size=1024)
    client = await connect_plain(port)
    client.sendMessage(json.dumps({"type": "ping", "pad": "x" * 2000}).encode())
    code, _ = await client.closed
    assert code == 1009


@pytest_twisted.ensureDeferred
async def test_origins_outside_the_allowlist_are_refused(make_node: Any) -> None:
    """A browser page from an origin outside the CORS allowlist cannot open /ws; one on
    the list can, and so can a client that sends no Origin."""
    _service, port = make_node(allowed_origins=("https://app.example",))
    with pytest.raises(ConnectionError):
        await connect_plain(port, headers={"Origin": "https://evil.example"})
    allowed = await connect_plain(port, headers={"Origin": "https://app.example"})
    allowed.transport.loseConnection()
    (await connect_plain(port)).transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_connections_over_the_cap_get_503(make_node: Any) -> None:
    """realtime.max_connections: the next opening handshake is refused."""
    _service, port = make_node(max_connections=2)
    first, second = await connect_plain(port), await connect_plain(port)
    with pytest.raises(ConnectionError, match=r"503|1006|None"):
        await connect_plain(port)
    first.transport.loseConnection()
    second.transport.loseConnection()


class NonReader(PlainClient):
    """Authenticates, subscribes, then stops reading from its socket for good."""

    def stop_reading(self) -> None:
        self.transport.pauseProducing()


@pytest_twisted.ensureDeferred
async def test_slow_consumer_is_disconnected_and_memory_stays_bounded(
    make_node: Any, log_events: list[LogEvent]
) -> None:
    """A subscriber that stops reading: the server's queue for it never grows past the
    outbound limit (plus one message), it is disconnected with a logged reason and
    counted, and a reading subscriber gets every event."""
    limit = 512 * 1024
    service, port = make_node(outbound_max_bytes=limit, outbound_max_messages=10_000)
    slow = await connect_plain(port, client=NonReader)
    slow.send({"type": "auth", "token": make_token("slow", "admin")})
    await slow.next("welcome")
    slow.send({"type": "subscribe", "topic": "installsure.system.health"})
    await slow.next("subscribed")
    fast = await connect(port, make_token("fast", "admin"))
    await fast.subscribe(fast.record, "installsure.system.health")
    assert isinstance(slow, NonReader)
    slow.stop_reading()
    server_side = next(p for p in service.factory.connections
                       if p.session.authid == "slow")
    before = service.broker.stats.slow_consumer_disconnects
    payload = {"blob": "x" * 8192}
    biggest = 0
    published = 0
    # About 4 MB/s: far more than a client that reads nothing can take (once the
    # kernel's socket buffers are full), easy for one that reads.
    for _round in range(1500):
        for _ in range(10):
            service.publish("installsure.system.health", payload)
            published += 1
            biggest = max(biggest, server_side._queued_bytes)
        await sleep(0.02)
        if server_side.state == server_side.STATE_CLOSED:
            break
    await wait_for(lambda: service.broker.stats.slow_consumer_disconnects > before)
    assert biggest <= limit + 9000
    assert not any(p.session.authid == "slow" for p in service.factory.connections
                   if p.session is not None)
    warnings = [e for e in log_events if "slow consumer" in e.get("log_format", "")]
    assert warnings
    assert warnings[0]["authid"] == "slow"
    try:
        await wait_for(lambda: len(fast.events) == published, timeout=30)
    except AssertionError:
        fast_side = [p for p in service.factory.connections if p.session.authid == "fast"]
        raise AssertionError(f"{len(fast.events)} of {published}; server side "
                             f"{[(p._paused, len(p._queue or ()), p.state) for p in fast_side]}"
                             ) from None
    assert not tracebacks(log_events)
    fast.leave()


class DeflateClient(PlainClient):
    """A plain-protocol client that remembers which extensions were agreed."""

    def onOpen(self) -> None:
        self.extensions = list(self.websocket_extensions_in_use)
        super().onOpen()


async def deflate_client(port: int) -> DeflateClient:
    from autobahn.twisted.websocket import WebSocketClientFactory
    from autobahn.websocket.compress import (
        PerMessageDeflateOffer,
        PerMessageDeflateResponse,
        PerMessageDeflateResponseAccept,
    )
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint

    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws")
    factory.protocol = DeflateClient

    def accept(response: Any) -> Any:
        assert isinstance(response, PerMessageDeflateResponse)
        return PerMessageDeflateResponseAccept(response)

    factory.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()],
                               perMessageCompressionAccept=accept)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client: DeflateClient = await endpoint.connect(factory)
    await client.opened
    return client


@pytest_twisted.ensureDeferred
async def test_permessage_deflate_only_when_enabled(make_node: Any) -> None:
    """A client offering permessage-deflate gets it only with realtime.permessage_deflate,
    then told to compress with the configured small window (what the server must keep
    to inflate), and messages still flow."""
    _service, off_port = make_node()
    off = await deflate_client(off_port)
    assert off.extensions == []
    off.transport.loseConnection()

    service, port = make_node(permessage_deflate=True, deflate_window_bits=10)
    on = await deflate_client(port)
    assert len(on.extensions) == 1
    assert on.extensions[0].client_max_window_bits == 10
    on.send({"type": "auth", "token": make_token("a", "admin")})
    await on.next("welcome")
    on.send({"type": "subscribe", "topic": "installsure.system.health"})
    await on.next("subscribed")
    service.publish("installsure.system.health", {"text": "x" * 5000})
    assert (await on.next("event"))["payload"] == {"text": "x" * 5000}
    on.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_metrics_are_exposed(node: Any) -> None:
    """/metrics' exposition carries the realtime families with live values."""
    from installsure.metrics import exposition

    service, port = node
    client = await connect(port, make_token("a", "admin"))
    await client.subscribe(client.record, "installsure.system.health")
    service.publish("installsure.system.health", {"ok": True})
    await wait_for(lambda: client.events)
    text = exposition()[0].decode()
    for family in ("installsure_realtime_sessions", "installsure_realtime_subscriptions",
                   "installsure_realtime_events_published_total",
                   "installsure_realtime_events_delivered_total",
                   "installsure_realtime_events_dropped_total",
                   "installsure_realtime_slow_consumer_disconnects_total",
                   "installsure_realtime_bytes_out_total",
                   "installsure_realtime_auth_failures_total"):
        assert family in text, family
    sessions = next(line for line in text.splitlines()
                    if line.startswith("installsure_realtime_sessions "))
    assert float(sessions.split()[1]) >= 1
    client.leave()
