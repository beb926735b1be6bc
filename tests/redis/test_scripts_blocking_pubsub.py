"""Lua scripts, blocking connections and pub/sub against a real private redis-server."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from installsure.redis.client import RedisService
from installsure.redis.interfaces import RedisReplyError, RedisUnavailable
from tests.fixtures.redis import RedisServerProcess
from tests.redis.conftest import MakeService
from tests.redis.helpers import Inbox, eventually, within

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest_twisted.ensureDeferred
async def test_script_loads_once_and_runs_by_sha(redis: RedisService) -> None:
    """The first call loads the script; afterwards it runs by EVALSHA under its sha1."""
    script = redis.script("incr-by", INCR_BY)
    assert await redis.execute("SCRIPT", "EXISTS", script.sha) == [0]
    assert await script([redis.key("c")], [5]) == 5
    assert await redis.execute("SCRIPT", "EXISTS", script.sha) == [1]
    assert await script([redis.key("c")], [2]) == 7
    assert redis.script("incr-by", INCR_BY) is script


@pytest_twisted.ensureDeferred
async def test_script_reloaded_after_flush(redis: RedisService) -> None:
    """After SCRIPT FLUSH (as after a restart) the next call reloads it transparently."""
    script = redis.script("incr-by", INCR_BY)
    assert await script([redis.key("c")], [1]) == 1
    await redis.execute("SCRIPT", "FLUSH")
    assert await script([redis.key("c")], [1]) == 2
    assert await redis.execute("SCRIPT", "EXISTS", script.sha) == [1]


@pytest_twisted.ensureDeferred
async def test_concurrent_first_calls_share_one_load(redis: RedisService) -> None:
    """Many calls before the script is loaded cause one SCRIPT LOAD; after a flush, at
    most one per pooled connection (NOSCRIPT replies on different connections may come
    after a reload finished), not one per call."""
    script = redis.script("incr-by", INCR_BY)
    await redis.execute("CONFIG", "RESETSTAT")
    results = await defer.gatherResults([script([redis.key("c")], [1]) for _ in range(50)])
    assert sorted(results) == list(range(1, 51))
    assert await _script_loads(redis) == 1
    await redis.execute("SCRIPT", "FLUSH")
    await defer.gatherResults([script([redis.key("c")], [1]) for _ in range(50)])
    assert await _script_loads(redis) <= 1 + redis.pool_size


async def _script_loads(redis: RedisService) -> int:
    stats = await redis.execute("INFO", "commandstats")
    line = next(x for x in stats.splitlines() if x.startswith("cmdstat_script|load:"))
    return int(line.split("calls=")[1].split(",")[0])


@pytest_twisted.ensureDeferred
async def test_script_errors_and_name_clash(redis: RedisService) -> None:
    """A Lua error() surfaces as RedisReplyError; one name cannot mean two scripts."""
    failing = redis.script("fails", "return redis.error_reply('BADJOB no such job')")
    with pytest.raises(RedisReplyError) as info:
        await failing([], [])
    assert info.value.code == "BADJOB"
    with pytest.raises(ValueError, match="already registered"):
        redis.script("fails", "return 1")


@pytest_twisted.ensureDeferred
async def test_blocking_connection_does_not_stall_pool(redis: RedisService) -> None:
    """A blocking pop waiting on its own connection leaves pooled commands fast, and gets
    the element pushed meanwhile."""
    blocking = redis.blocking_connection()
    try:
        popped = blocking.execute("BLPOP", redis.key("q"), 5, timeout=7)
        results: list[object] = []
        popped.addCallback(lambda r: results.append(r) or r)
        started = time.monotonic()
        for i in range(20):
            await redis.execute("SET", redis.key("k"), i)
        assert time.monotonic() - started < 0.5
        assert results == []
        await redis.execute("RPUSH", redis.key("q"), "job-1")
        assert await within(5, popped) == [redis.key("q"), "job-1"]
    finally:
        await blocking.close()


@pytest_twisted.ensureDeferred
async def test_blocking_timeout_then_reuse(redis: RedisService) -> None:
    """No reply within the timeout: RedisUnavailable; the connection is remade and the
    next blocking command works."""
    blocking = redis.blocking_connection()
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match=r"did not answer within 0\.3s"):
            await within(5, blocking.execute("BLPOP", redis.key("empty"), 0, timeout=0.3))
        assert time.monotonic() - started < 1.5
        await redis.execute("RPUSH", redis.key("q2"), "x")
        result = await eventually(
            lambda: blocking.execute("BLPOP", redis.key("q2"), 1, timeout=3)
        )
        assert result == [redis.key("q2"), "x"]
    finally:
        await blocking.close()


@pytest_twisted.ensureDeferred
async def test_cancelling_blocking_command(redis: RedisService) -> None:
    """Cancelling a pending blocking command fails it with CancelledError at once."""
    blocking = redis.blocking_connection()
    try:
        await within(5, blocking._link.when_connected(5))
        d = blocking.execute("BLPOP", redis.key("never"), 0, timeout=30)
        d.cancel()
        with pytest.raises(defer.CancelledError):
            await d
    finally:
        await blocking.close()


@pytest_twisted.ensureDeferred
async def test_publish_subscribe_and_cancel(redis: RedisService) -> None:
    """Messages reach channel and pattern subscribers; after cancel() they stop."""
    inbox, pinbox = Inbox(), Inbox()
    sub = await within(5, redis.subscribe("news", inbox))
    psub = await within(5, redis.psubscribe("project.*", pinbox))
    assert await redis.publish("news", "hello") == 1
    assert await inbox.next() == ("news", "hello")
    await redis.publish("project.42", "changed")
    assert await pinbox.next() == ("project.42", "changed")
    await sub.cancel()
    await psub.cancel()

    async def unsubscribed() -> None:
        assert await redis.execute("PUBSUB", "NUMSUB", "news") == ["news", 0]
        assert await redis.execute("PUBSUB", "NUMPAT") == 0

    await eventually(unsubscribed)
    assert await redis.publish("news", "late") == 0
    assert inbox.messages == [("news", "hello")]


@pytest_twisted.ensureDeferred
async def test_bad_subscriptions_refused(redis: RedisService) -> None:
    """An empty channel name or a callback that cannot be called is refused clearly."""
    with pytest.raises(ValueError, match="non-empty string"):
        await redis.subscribe("", Inbox())
    with pytest.raises(TypeError, match="must be callable"):
        await redis.psubscribe("p.*", "not a function")  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_two_callbacks_one_channel(redis: RedisService) -> None:
    """Two subscribers of one channel both get each message; cancelling one keeps the
    other subscribed; a failing callback does not stop delivery to the next."""
    first, second = Inbox(), Inbox()

    def broken(channel: str, message: str) -> None:
        raise RuntimeError("subscriber bug")

    await redis.subscribe("c", broken)
    sub1 = await redis.subscribe("c", first)
    await redis.subscribe("c", second)
    both = defer.gatherResults([first.next(), second.next()])
    await redis.publish("c", "m1")
    assert await both == [("c", "m1"), ("c", "m1")]
    await sub1.cancel()
    await redis.publish("c", "m2")
    assert await second.next() == ("c", "m2")
    assert first.messages == [("c", "m1")]


@pytest_twisted.ensureDeferred
async def test_resubscribes_after_redis_restart(redis_server: RedisServerProcess,
                                                redis: RedisService) -> None:
    """After Redis restarts, channel and pattern subscriptions are made again by
    themselves and messages flow as before."""
    inbox, pinbox = Inbox(), Inbox()
    await redis.subscribe("events", inbox)
    await redis.psubscribe("topic.*", pinbox)
    redis_server.restart()

    async def delivered() -> None:
        assert await redis.publish("events", "after restart") == 1
        assert await redis.publish("topic.x", "p") == 1

    await eventually(delivered)
    if not pinbox.messages:
        await pinbox.next()
    assert ("events", "after restart") in inbox.messages
    assert ("topic.x", "p") in pinbox.messages


@pytest_twisted.ensureDeferred
async def test_a_gap_is_reported_once_per_reconnection(redis_server: RedisServerProcess,
                                                       redis: RedisService) -> None:
    """A subscription is live while Redis confirms it; when its connection is lost it
    is not, and once it is confirmed again on a new connection on_gap is called (once,
    not at the first subscription), so the subscriber can find out what it missed."""
    gaps: list[str] = []
    sub = await within(5, redis.subscribe("revocations", Inbox(),
                                          on_gap=lambda: gaps.append("channel")))
    psub = await within(5, redis.psubscribe("changes.*", Inbox(),
                                            on_gap=lambda: gaps.append("pattern")))
    assert sub.live
    assert psub.live
    assert gaps == []
    redis_server.stop()

    async def down() -> None:
        assert not sub.live
        assert not psub.live

    await eventually(down)
    redis_server.start()

    async def reported() -> None:
        assert sorted(gaps) == ["channel", "pattern"]

    await eventually(reported)
    assert sub.live
    assert psub.live
    redis_server.restart()
    await eventually(lambda: _assert_gaps(gaps, 4))
    await sub.cancel()
    assert not sub.live


async def _assert_gaps(gaps: list[str], count: int) -> None:
    assert len(gaps) == count, gaps


@pytest_twisted.ensureDeferred
async def test_blocking_command_waits_for_reconnection(redis_server: RedisServerProcess,
                                                       redis: RedisService) -> None:
    """While Redis is down a blocking command fails only after its timeout (no busy loop
    for callers), and once Redis is back the same connection serves it."""
    blocking = redis.blocking_connection()
    try:
        await within(5, blocking._link.when_connected(5))
        redis_server.stop()
        await eventually(lambda: _assert_down(blocking))
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await within(5, blocking.execute("BLPOP", "q", 1, timeout=0.5))
        assert 0.4 < time.monotonic() - started < 2.0
        redis_server.start()
        await eventually(lambda: redis.execute("RPUSH", "q", "v"))
        result = await within(15, blocking.execute("BLPOP", "q", 1, timeout=10))
        assert result == ["q", "v"]
    finally:
        await blocking.close()


async def _assert_down(blocking: object) -> None:
    assert not blocking.is_connected  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_silent_pubsub_connection_is_remade(redis_server: RedisServerProcess,
                                                  make_service: MakeService) -> None:
    """A pub/sub connection whose server stops answering (SIGSTOP: the TCP connection
    stays open) is detected by its liveness PING, remade and subscribed again."""
    service = make_service(command_timeout=0.5)
    service.pubsub_health_interval = 0.2
    inbox = Inbox()
    await within(5, service.subscribe("alive", inbox))
    subscriber = service._subscriber
    assert subscriber is not None
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        await eventually(lambda: _assert_reconnected(subscriber), seconds=5, interval=0.05)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)

    # Connections remade while Redis was stopped may still be counted as subscribers by
    # it for a moment, so publish until the live one has delivered.
    async def delivered() -> None:
        arrived = inbox.next(0.5)
        await service.publish("alive", "still here")
        await arrived

    await eventually(delivered)
    assert ("alive", "still here") in inbox.messages


async def _assert_reconnected(subscriber: Any) -> None:
    assert subscriber._connections >= 2


@pytest_twisted.ensureDeferred
async def test_cancel_while_waiting_for_reconnection(redis_server: RedisServerProcess,
                                                     redis: RedisService) -> None:
    """A blocking command cancelled while it waits for the connection to come back is
    simply dropped: the reconnection that follows raises no error and serves the next."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    blocking = redis.blocking_connection()
    try:
        await within(5, blocking._link.when_connected(5))
        redis_server.stop()
        await eventually(lambda: _assert_down(blocking))
        waiting = blocking.execute("BLPOP", "q", 1, timeout=30)
        waiting.cancel()
        with pytest.raises(defer.CancelledError):
            await waiting
        redis_server.start()
        await eventually(lambda: redis.execute("RPUSH", "q", "v"))
        assert await within(15, blocking.execute("BLPOP", "q", 1, timeout=10)) == ["q", "v"]
    finally:
        globalLogPublisher.removeObserver(events.append)
        await blocking.close()
    assert not [e for e in events if "log_failure" in e]
