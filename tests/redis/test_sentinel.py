"""Redis Sentinel: master discovery and failover with a real redis-server in sentinel mode."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from installsure.redis.client import RedisService
from installsure.redis.interfaces import RedisUnavailable
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess, find_redis_server, free_port
from tests.redis.helpers import eventually, within


def _wait_for_ping(
    port: int, process: subprocess.Popen[bytes], log: Path, *, password: str | None = None
) -> None:
    deadline = time.monotonic() + 10
    auth = f"AUTH {password}\r\n".encode() if password else b""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(auth + b"PING\r\n")
                if s.recv(64).endswith(b"+PONG\r\n"):
                    return
        except OSError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.02)
    pytest.fail(f"redis on port {port} did not start:\n{log.read_text(errors='replace')}")


def _command(port: int, *args: str) -> bytes:
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        return s.recv(4096)


@contextmanager
def _sentinel_for(
    master_port: int, directory: Path, *, requirepass: str | None = None
) -> Iterator[int]:
    """A redis-server --sentinel watching 127.0.0.1:master_port as "mymaster"
    (asking its own clients for ``requirepass`` when given)."""
    port = free_port()
    conf = directory / "sentinel.conf"
    conf.write_text(
        (f"requirepass {requirepass}\n" if requirepass else "")
        + f"port {port}\n"
        "bind 127.0.0.1\n"
        f"dir {directory}\n"
        f"logfile {directory / 'sentinel.log'}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds mymaster 500\n"
        "sentinel failover-timeout mymaster 2000\n"
    )
    process = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"])
    try:
        _wait_for_ping(port, process, directory / "sentinel.log", password=requirepass)
        yield port
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture
def sentinel(redis_server: RedisServerProcess, tmp_path: Path) -> Iterator[int]:
    """A sentinel watching the private server as master "mymaster"."""
    with _sentinel_for(redis_server.port, tmp_path) as port:
        yield port


@pytest_twisted.ensureDeferred
async def test_master_discovered_through_sentinel(redis_server: RedisServerProcess,
                                                  sentinel: int) -> None:
    """Given only the sentinel and the master name, commands reach the master."""
    target = RedisTarget.for_sentinels([("127.0.0.1", sentinel)], "mymaster")
    service = RedisService(target, command_timeout=2.0)
    service.startService()
    try:
        await within(10, service.when_connected(10))
        await service.execute("SET", "via-sentinel", "yes")
        assert _command(redis_server.port, "GET", "via-sentinel") == b"$3\r\nyes\r\n"
        inbox: list[tuple[str, str]] = []
        await within(10, service.subscribe("news", lambda c, m: inbox.append((c, m))))
        assert await service.publish("news", "hi") == 1
    finally:
        await service.stopService()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_failover_to_promoted_replica(redis_server: RedisServerProcess,
                                            tmp_path: Path) -> None:
    """When the master dies, Sentinel promotes the replica and the service follows it."""
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    replica = RedisServerProcess(replica_dir)
    replica.start()
    try:
        _command(replica.port, "REPLICAOF", "127.0.0.1", str(redis_server.port))
        _wait_until_synced(replica.port)
        # Started after the replica is attached, the sentinel learns of it at once.
        with _sentinel_for(redis_server.port, tmp_path) as sentinel:
            await _follow_failover(redis_server, replica, sentinel)
    finally:
        replica.kill()


def _wait_until_synced(replica_port: int) -> None:
    deadline = time.monotonic() + 10
    while b"master_link_status:up" not in _command(replica_port, "INFO", "replication"):
        assert time.monotonic() < deadline, "the replica did not sync with the master"
        time.sleep(0.05)


async def _follow_failover(master: RedisServerProcess, replica: RedisServerProcess,
                           sentinel: int) -> None:
    target = RedisTarget.for_sentinels([("127.0.0.1", sentinel)], "mymaster")
    service = RedisService(target, command_timeout=1.0)
    service.startService()
    try:
        await within(10, service.when_connected(10))
        await service.execute("SET", "before", "1")
        master.kill()
        result = await eventually(lambda: service.execute("SET", "after", "2"), seconds=20)
        assert result == "OK"
        assert _command(replica.port, "GET", "after") == b"$1\r\n2\r\n"
        assert b"role:master" in _command(replica.port, "INFO", "replication")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_unreachable_sentinel_fails_clearly_without_log_spam() -> None:
    """No sentinel answering: commands fail with RedisUnavailable naming the master and
    the sentinels, and the retries are not logged one by one."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    port = free_port()
    service = RedisService(RedisTarget.for_sentinels([("127.0.0.1", port)], "mymaster"),
                           command_timeout=0.5, connect_timeout=0.5)
    service.startService()
    try:
        with pytest.raises(RedisUnavailable, match=f"'mymaster' via sentinel.*127.0.0.1:{port}"):
            await within(5, service.execute("PING"))
        # a few discovery rounds
        await eventually(lambda: _failed_twice(service), seconds=10)
    finally:
        await service.stopService()
        globalLogPublisher.removeObserver(events.append)
    texts = [formatEvent(e) for e in events]
    warnings = [formatEvent(e) for e in events if e["log_level"] != LogLevel.debug]
    assert not [t for t in texts if "Scheduling retry" in t]
    assert len([t for t in warnings if "Cannot reach Redis" in t]) == 1


async def _failed_twice(service: RedisService) -> None:
    with pytest.raises(RedisUnavailable, match="No master found"):
        await service.execute("PING")


@pytest_twisted.ensureDeferred
async def test_sentinels_with_a_password_of_their_own(
    redis_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Sentinels that ask for a password (their own requirepass, as e.g. the Bitnami
    chart sets up) are reached with ``sentinel_password``; without it, or with a wrong
    one, commands fail with a message that names the setting to fill in or check."""
    with _sentinel_for(redis_server.port, tmp_path, requirepass="sentinel-secret") as port:
        for sentinel_password, expected in (
            (None, r"set redis\.sentinel_password"),
            ("not-it", r"refused redis\.sentinel_password"),
        ):
            refused = RedisService(
                RedisTarget.for_sentinels(
                    [("127.0.0.1", port)], "mymaster", sentinel_password=sentinel_password
                ),
                command_timeout=0.5, connect_timeout=0.5,
            )
            refused.startService()
            try:
                with pytest.raises(RedisUnavailable, match=expected):
                    await within(10, refused.execute("PING"))
            finally:
                await refused.stopService()

        target = RedisTarget.for_sentinels(
            [("127.0.0.1", port)], "mymaster", sentinel_password="sentinel-secret"
        )
        assert "sentinel-secret" not in repr(target)
        service = RedisService(target, command_timeout=2.0)
        service.startService()
        try:
            await within(10, service.when_connected(10))
            await service.execute("SET", "via-guarded-sentinel", "yes")
            assert _command(redis_server.port, "GET", "via-guarded-sentinel") == b"$3\r\nyes\r\n"
        finally:
            await service.stopService()
