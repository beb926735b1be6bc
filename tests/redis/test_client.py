"""RedisService against a real private redis-server: commands, timeouts, recovery."""

from __future__ import annotations

import enum
import os
import signal
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.logger import formatEvent, globalLogPublisher

from installsure.redis.client import RedisService
from installsure.redis.interfaces import RedisReplyError, RedisUnavailable
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess, free_port
from tests.redis.conftest import MakeService
from tests.redis.helpers import eventually, within


@pytest_twisted.ensureDeferred
async def test_commands_round_trip_as_text(redis: RedisService) -> None:
    """Replies come back as decoded str, numbers are not converted, integers stay ints."""
    assert await redis.execute("SET", redis.key("a"), "héllo") == "OK"
    assert await redis.execute("GET", redis.key("a")) == "héllo"
    await redis.execute("SET", redis.key("n"), "007")
    assert await redis.execute("GET", redis.key("n")) == "007"
    assert await redis.execute("INCR", redis.key("counter")) == 1
    assert await redis.execute("GET", redis.key("missing")) is None


@pytest_twisted.ensureDeferred
async def test_key_prefix(make_service: MakeService) -> None:
    """key() joins parts under the configured prefix, and that is the key Redis sees."""
    service = make_service(key_prefix="tenant:")
    await within(5, service.when_connected())
    assert service.key("jobs", "wait") == "tenant:jobs:wait"
    await service.execute("SET", service.key("x"), "1")
    assert await service.execute("KEYS", "*") == ["tenant:x"]


@pytest_twisted.ensureDeferred
async def test_error_reply_is_redis_reply_error(redis: RedisService) -> None:
    """An error reply fails with RedisReplyError carrying the code and message."""
    await redis.execute("SET", redis.key("s"), "text")
    with pytest.raises(RedisReplyError) as info:
        await redis.execute("LPUSH", redis.key("s"), "x")
    assert info.value.code == "WRONGTYPE"
    with pytest.raises(RedisReplyError, match="unknown command"):
        await redis.execute("NOSUCHCOMMAND")


@pytest_twisted.ensureDeferred
async def test_blocking_and_connection_state_commands_refused_on_pool(redis: RedisService) -> None:
    """BLPOP, SUBSCRIBE, MULTI... on the shared pool would stall or corrupt it: refused clearly."""
    for command in ("BLPOP", "blmove", "SUBSCRIBE", "MULTI", "SELECT"):
        with pytest.raises(ValueError, match="cannot run on the shared connection pool"):
            await redis.execute(command, "k", 0)
    assert await redis.execute("PING") == "PONG"


@pytest_twisted.ensureDeferred
async def test_ping_reports_latency_in_ms(redis: RedisService) -> None:
    """ping() answers a positive round-trip time in milliseconds (well under a second here)."""
    latency = await redis.ping()
    assert isinstance(latency, float)
    assert 0 < latency < 1000


@pytest_twisted.ensureDeferred
async def test_database_number_from_url(redis_server: RedisServerProcess,
                                        make_service: MakeService) -> None:
    """redis://.../3 selects database 3 on every pooled connection."""
    service = make_service(RedisTarget.from_url(f"redis://127.0.0.1:{redis_server.port}/3"))
    await within(5, service.when_connected())
    await service.execute("SET", "in-db-3", "yes")
    other = make_service()
    await within(5, other.when_connected())
    assert await other.execute("GET", "in-db-3") is None
    assert await other.execute("MOVE", "nothing", 3) == 0


@pytest_twisted.ensureDeferred
async def test_unix_socket_target(redis_server: RedisServerProcess,
                                  make_service: MakeService) -> None:
    """A unix:// target talks to the same server over its socket."""
    service = make_service(RedisTarget.for_unix_socket(redis_server.unix_socket))
    await within(5, service.when_connected())
    assert await service.execute("ECHO", "over the socket") == "over the socket"


@pytest_twisted.ensureDeferred
async def test_hung_redis_times_out_then_recovers(redis_server: RedisServerProcess,
                                                  redis: RedisService) -> None:
    """A stopped (SIGSTOP) Redis: commands fail with RedisUnavailable within about the
    command timeout instead of waiting forever, and work again once it resumes."""
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match=r"did not answer within 1\.0s \(is it running"):
            await within(5, redis.execute("GET", "k"))
        assert time.monotonic() - started < 2.0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await eventually(lambda: redis.execute("PING")) == "PONG"


@pytest_twisted.ensureDeferred
async def test_dead_redis_fails_fast_then_recovers(redis_server: RedisServerProcess,
                                                   redis: RedisService) -> None:
    """With Redis gone the connection is known lost: commands fail at once; after it is
    started again the pool reconnects by itself and commands succeed."""
    await redis.execute("SET", "durable", "1")
    redis_server.stop()
    await eventually(lambda: _assert_disconnected(redis))
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="not connected"):
        await within(5, redis.execute("GET", "durable"))
    assert time.monotonic() - started < 0.5
    await eventually(lambda: _assert_status_down(redis))
    redis_server.start()
    assert await eventually(lambda: redis.execute("GET", "durable")) == "1"
    assert redis.is_connected
    assert redis.status["state"] == "up"
    assert redis.status["lastError"] is None


async def _assert_disconnected(redis: RedisService) -> None:
    assert not redis.is_connected


async def _assert_status_down(redis: RedisService) -> None:
    status = redis.status
    assert (status["state"], status["connections"]) == ("down", 0)
    assert "refused" in str(status["lastError"]).lower()


@pytest_twisted.ensureDeferred
async def test_unreachable_at_start_fails_clearly_and_recovers(
    tmp_path_factory: pytest.TempPathFactory, make_service: MakeService
) -> None:
    """Nothing listening at start: commands fail with a message naming the address, the
    service keeps trying, and it connects once a server appears there."""
    server = RedisServerProcess(tmp_path_factory.mktemp("late"))
    service = make_service(RedisTarget.from_url(server.url), command_timeout=1.0)
    try:
        with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{server.port}"):
            await within(5, service.execute("PING"))
        assert not service.is_connected
        server.start()
        assert await eventually(lambda: service.execute("PING")) == "PONG"
    finally:
        server.kill()


@pytest_twisted.ensureDeferred
async def test_stop_service_closes_connections(redis_server: RedisServerProcess) -> None:
    """stopService fires once the pool is closed; later commands fail with RedisUnavailable."""
    service = RedisService(RedisTarget.from_url(redis_server.url))
    service.startService()
    await within(5, service.when_connected())
    await within(5, service.stopService())
    assert not service.is_connected
    with pytest.raises(RedisUnavailable):
        await service.execute("PING")


@pytest_twisted.ensureDeferred
async def test_service_can_be_started_again(redis_server: RedisServerProcess) -> None:
    """Stopped and started again (as a parent service may do), it connects anew."""
    service = RedisService(RedisTarget.from_url(redis_server.url))
    service.startService()
    await within(5, service.when_connected())
    await within(5, service.stopService())
    service.startService()
    try:
        assert await within(5, service.execute("PING")) == "PONG"
        inbox: list[tuple[str, str]] = []
        await within(5, service.subscribe("again", lambda c, m: inbox.append((c, m))))
    finally:
        await within(5, service.stopService())


@pytest_twisted.ensureDeferred
async def test_connections_asked_for_before_start_open_with_it(
    redis_server: RedisServerProcess,
) -> None:
    """Subscriptions and blocking connections made before startService connect when the
    service starts (and are closed by stopService), not behind its back."""
    service = RedisService(RedisTarget.from_url(redis_server.url))
    inbox: list[tuple[str, str]] = []
    subscribed = service.subscribe("early", lambda c, m: inbox.append((c, m)))
    blocking = service.blocking_connection()
    assert not blocking.is_connected
    with pytest.raises(RedisUnavailable):
        await service.execute("PING")
    service.startService()
    try:
        await within(5, subscribed)
        assert await within(5, blocking.execute("ECHO", "hi", timeout=3)) == "hi"
        assert await service.publish("early", "x") == 1
    finally:
        await within(5, service.stopService())
    assert not blocking.is_connected


def test_constructor_validates_options() -> None:
    """Nonsense timeouts and pool sizes are refused with the option's name."""
    target = RedisTarget.from_url(f"redis://127.0.0.1:{free_port()}")
    with pytest.raises(ValueError, match="command_timeout"):
        RedisService(target, command_timeout=0)
    with pytest.raises(ValueError, match="pool_size"):
        RedisService(target, pool_size=0)


@pytest_twisted.ensureDeferred
async def test_one_log_line_per_outage(redis_server: RedisServerProcess,
                                       redis: RedisService) -> None:
    """An outage with several reconnection attempts logs one "lost" warning and one "back"
    line, not a line per retry."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        redis_server.stop()
        await eventually(lambda: _assert_disconnected(redis))
        # The point is the retries nobody may log: let a few happen (0.2 s, 0.5 s, ...).
        await task.deferLater(reactor, 1.0, lambda: None)  # type: ignore[arg-type]
        redis_server.start()
        await eventually(lambda: redis.execute("PING"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    texts = [formatEvent(e) for e in events]
    assert len([t for t in texts if "connection to" in t and "lost" in t]) == 1
    assert len([t for t in texts if "connection is back" in t]) == 1
    assert not [t for t in texts if "Scheduling retry" in t]


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_a_clear_error(redis_server: RedisServerProcess,
                                               make_service: MakeService) -> None:
    """Refused credentials stop the retries and every command says why, at once."""
    await _command_ok(make_service, "CONFIG", "SET", "requirepass", "right")
    target = RedisTarget.from_url(f"redis://:wrong@127.0.0.1:{redis_server.port}/0")
    service = make_service(target, command_timeout=3.0)
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="could not auth"):
        await within(5, service.execute("PING"))
    assert time.monotonic() - started < 2.0
    good = make_service(RedisTarget.from_url(f"redis://:right@127.0.0.1:{redis_server.port}"))
    assert await within(5, good.execute("PING")) == "PONG"


@pytest_twisted.ensureDeferred
async def test_database_out_of_range_is_a_clear_error(redis_server: RedisServerProcess,
                                                      make_service: MakeService) -> None:
    """A database number the server does not have fails with the server's reason."""
    target = RedisTarget.from_url(f"redis://127.0.0.1:{redis_server.port}/999")
    service = make_service(target)
    with pytest.raises(RedisUnavailable, match="could not set dbid=999"):
        await within(5, service.execute("PING"))


async def _command_ok(make_service: MakeService, *args: str) -> None:
    admin = make_service()
    await within(5, admin.when_connected())
    assert await admin.execute(*args) == "OK"
    await admin.stopService()


@pytest_twisted.ensureDeferred
async def test_arguments_sent_exactly_or_refused(redis: RedisService) -> None:
    """Floats keep their precision, int enums send their number; None, bool and broken
    Unicode are refused with a clear error before anything is sent, and the connection
    stays usable."""

    class Priority(enum.IntEnum):
        HIGH = 7

    await redis.execute("ZADD", redis.key("z"), 0.1234567891, "a", 1e-12, "b")
    assert float(await redis.execute("ZSCORE", redis.key("z"), "a")) == 0.1234567891
    assert float(await redis.execute("ZSCORE", redis.key("z"), "b")) == 1e-12
    await redis.execute("SET", redis.key("p"), Priority.HIGH)
    assert await redis.execute("GET", redis.key("p")) == "7"
    await redis.execute("SET", redis.key("b"), b"\xff\x00raw")
    with pytest.raises(TypeError, match="not NoneType"):
        await redis.execute("SET", redis.key("x"), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot be bool"):
        await redis.execute("SET", redis.key("x"), True)
    with pytest.raises(ValueError, match="not valid Unicode"):
        await redis.execute("SET", redis.key("x"), "\ud800")
    with pytest.raises(ValueError, match="NaN"):
        await redis.execute("ZADD", redis.key("z"), float("nan"), "c")
    assert await redis.execute("EXISTS", redis.key("x")) == 0
    assert await redis.execute("PING") == "PONG"


@pytest_twisted.ensureDeferred
async def test_readonly_replica_is_unavailable_not_a_bad_command(
    redis_server: RedisServerProcess, redis: RedisService
) -> None:
    """Writing to a server that became a replica (as after a failover) fails with
    RedisUnavailable, the retryable error, and the connections are remade."""
    await redis.execute("REPLICAOF", "127.0.0.1", str(free_port()))
    try:
        with pytest.raises(RedisUnavailable, match="cannot serve commands right now: READONLY"):
            await redis.execute("SET", "k", "v")
        await eventually(lambda: redis.execute("PING"))
    finally:
        await eventually(lambda: redis.execute("REPLICAOF", "NO", "ONE"))
    assert await redis.execute("SET", "k", "v") == "OK"


@pytest_twisted.ensureDeferred
async def test_on_connected_tells_when_redis_can_be_reached_again(
    redis_server: RedisServerProcess, make_service: MakeService
) -> None:
    """on_connected callbacks run when the pool connects, and again within about a
    second of a restarted Redis listening (the reconnect delay stays short); once
    removed, a callback is not called any more."""
    calls: list[float] = []
    service = make_service(command_timeout=1.0)
    remove = service.on_connected(lambda: calls.append(reactor.seconds()))
    await eventually(lambda: within(0.1, service.execute("PING")))
    await eventually(lambda: _true(bool(calls)))
    redis_server.stop()
    await eventually(lambda: _fails(service))
    await task.deferLater(reactor, 3.0, lambda: None)  # reconnect attempts back off
    before = len(calls)
    redis_server.start()
    back = reactor.seconds()
    await eventually(lambda: _true(len(calls) > before), seconds=5, interval=0.01)
    assert calls[-1] - back < 1.6
    remove()
    after = len(calls)
    redis_server.restart()
    await eventually(lambda: within(0.5, service.execute("PING")), seconds=10)
    assert len(calls) == after


async def _true(value: bool) -> None:
    assert value


async def _fails(service: RedisService) -> None:
    with pytest.raises(RedisUnavailable):
        await service.execute("PING")
