"""End to end: ``twistd -n installsure`` started, used and stopped as operators do."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.e2e.server import TWISTD, ServerProcess, child_environment
from tests.fixtures.redis import RedisServerProcess

pytestmark = pytest.mark.e2e


def redis_command(unix_socket: Path, *args: str) -> bytes:
    """Send one command over RESP on a unix socket and return the raw reply."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(unix_socket))
        s.sendall(payload)
        return s.recv(65536)


@pytest_twisted.inlineCallbacks
def test_runs_with_embedded_defaults_stops_cleanly_and_keeps_data(tmp_path: Path):
    """Fresh machine defaults (./data, embedded Redis, SQLite): ready; SIGTERM exits 0;
    data survives a restart."""
    server = ServerProcess(tmp_path, "--environment", "test", default_data_dir=True)
    server.start()
    try:
        yield server.wait_until("/livez")
        ready = yield server.wait_until("/readyz")
        body = yield ready.json()
        assert body["status"] == "ready"
        health = yield treq.get(server.base + "/api/health")
        assert health.code == 200
        payload = yield health.json()
        assert payload["checks"]["redis"]["status"] == "up"
        assert payload["checks"]["database"]["status"] == "up"
        data = tmp_path / "data"
        assert (data / "installsure.db").exists()
        secret = (data / "jwt-secret").read_text()
        sockets = list(data.rglob("redis.sock"))
        assert len(sockets) == 1, sockets
        assert redis_command(sockets[0], "SET", "e2e:kept", "yes") == b"+OK\r\n"
        code = yield server.stop()
        assert code == 0, server.output()
        assert "Traceback" not in server.output()
        # The embedded redis-server went with it.
        with pytest.raises(OSError):
            redis_command(sockets[0], "PING")

        again = ServerProcess(tmp_path, "--environment", "test", port=server.port,
                              default_data_dir=True)
        again.start()
        try:
            yield again.wait_until("/readyz")
            assert (data / "jwt-secret").read_text() == secret
            assert redis_command(sockets[0], "GET", "e2e:kept") == b"$3\r\nyes\r\n"
        finally:
            code = yield again.stop()
        assert code == 0
    finally:
        server.kill()


def test_bad_configuration_exits_non_zero_with_every_problem(tmp_path: Path) -> None:
    """Several bad settings: exit status 1, each named, and no traceback."""
    result = subprocess.run(
        [str(TWISTD), "--pidfile=", "-n", "installsure", "--role", "boss",
         "--data-dir", str(tmp_path / "data")],
        env=child_environment({"ENABLE_FILE_PROCESSING": "maybe", "PORT": "99999"}),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "role (option --role)" in output
    assert "ENABLE_FILE_PROCESSING" in output
    assert "65535" in output
    assert "Traceback" not in output


def test_help_documents_every_option(tmp_path: Path) -> None:
    """``twistd installsure --help`` names every option of the issue, and promises no
    WebSocket (there is none yet)."""
    result = subprocess.run(
        [str(TWISTD), "installsure", "--help"], env=child_environment(),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--config", "--listen", "--data-dir", "--role", "--environment",
                   "--redis-url", "--database-url"):
        assert option in result.stdout, option
    # Nothing serves a WebSocket yet; the help must not promise one.
    assert "WebSocket" not in result.stdout
    assert "WAMP" not in result.stdout


@pytest_twisted.inlineCallbacks
def test_port_in_use_is_a_clear_fatal_error(tmp_path: Path):
    """Another program on our port: a message naming it and exit status 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess(tmp_path, "--environment", "test", port=port)
        server.start()
        try:
            code = yield server.wait_exit(timeout=60)
        finally:
            server.kill()
    output = server.output()
    assert code == 1, output
    assert f"cannot listen on tcp:{port}" in output
    assert "Traceback" not in output


@pytest_twisted.inlineCallbacks
def test_redis_down_at_start_then_recovers(tmp_path: Path):
    """Redis unreachable at start: up but not ready; ready once Redis appears."""
    redis = RedisServerProcess(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server = ServerProcess(tmp_path / "server", "--environment", "test",
                           "--redis-url", redis.url)
    server.start()
    try:
        yield server.wait_until("/livez")
        not_ready = yield server.wait_until("/readyz", status=503)
        body = yield not_ready.json()
        assert body["status"] == "not ready"
        assert body["checks"]["redis"]["status"] != "up"
        redis.start()
        ready = yield server.wait_until("/readyz", status=200, timeout=40)
        assert (yield ready.json())["status"] == "ready"
    finally:
        yield server.stop()
        redis.kill()


@pytest_twisted.inlineCallbacks
def test_runs_under_the_asyncio_reactor(tmp_path: Path):
    """The plugin installs no reactor, so ``--reactor=asyncio`` works."""
    server = ServerProcess(tmp_path, "--environment", "test",
                           twistd_args=["--reactor=asyncio"])
    server.start()
    try:
        response = yield server.wait_until("/livez")
        assert json.loads((yield response.content())) == {"status": "alive"}
    finally:
        code = yield server.stop()
    assert code == 0, server.output()


@pytest_twisted.inlineCallbacks
def test_info_advertises_realtime_only_when_it_is_served(tmp_path: Path):
    """The old ``ENABLE_REAL_TIME_SYNC=true`` is accepted and ``/info`` reports
    ``realTimeSync`` true while ``/ws`` is served; with ``realtime.enabled`` off it says
    false whatever the old switch says. The other switches are reported as set."""
    found = []
    for enabled in ("true", "false"):
        server = ServerProcess(tmp_path / enabled, "--environment", "test", env={
            "ENABLE_REAL_TIME_SYNC": "true", "ENABLE_FILE_PROCESSING": "false",
            "INSTALLSURE_REALTIME_ENABLED": enabled,
        })
        (tmp_path / enabled).mkdir()
        server.start()
        try:
            response = yield server.wait_until("/info")
            found.append((yield response.json())["features"])
        finally:
            code = yield server.stop()
        assert code == 0, server.output()
    assert found == [
        {"realTimeSync": True, "fileProcessing": False, "emailNotifications": True},
        {"realTimeSync": False, "fileProcessing": False, "emailNotifications": True},
    ]


@pytest_twisted.inlineCallbacks
def test_logfile_gets_json_lines_with_access_events(tmp_path: Path):
    """``--logfile`` with ``logging.format = json``: one parseable object per line, and one
    access event per request with its structured fields."""
    logfile = tmp_path / "server.log"
    server = ServerProcess(
        tmp_path, "--environment", "test",
        env={"INSTALLSURE_LOGGING_FORMAT": "json"},
        twistd_args=[f"--logfile={logfile}"],
    )
    server.start()
    try:
        response = yield server.wait_until("/livez")
        request_id = response.headers.getRawHeaders("X-Request-ID")[0]
    finally:
        code = yield server.stop()
    assert code == 0, server.output()
    events = [json.loads(line) for line in logfile.read_text().splitlines() if line.strip()]
    access = [e for e in events if e.get("namespace") == "installsure.access"
              and e.get("requestId") == request_id]
    assert len(access) == 1, events[-5:]
    assert access[0]["status"] == 200
    assert access[0]["path"] == "/livez"
    assert access[0]["method"] == "GET"
    assert isinstance(access[0]["durationMs"], int | float)


@pytest_twisted.inlineCallbacks
def test_twist_runs_the_plugin_too(tmp_path: Path):
    """``twist installsure`` (the newer runner) serves the same application."""
    port = ServerProcess(tmp_path, port=None).port
    twist = TWISTD.parent / "twist"
    server = ServerProcess(tmp_path, port=port)
    server.command = lambda: [  # type: ignore[method-assign]
        str(twist), "installsure", "--data-dir", str(tmp_path / "data"),
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--environment", "test",
    ]
    server.start()
    try:
        response = yield server.wait_until("/readyz")
        assert (yield response.json())["status"] == "ready"
    finally:
        yield server.stop()


def test_unopenable_log_file_exits_with_a_message(tmp_path: Path) -> None:
    """logging.file under a regular file: exit status 1 with the reason, no traceback."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = subprocess.run(
        [str(TWISTD), "--pidfile=", "-n", "installsure", "--data-dir", str(tmp_path / "data")],
        env=child_environment({"INSTALLSURE_LOGGING_FILE": str(blocker / "installsure.log")}),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert str(blocker) in output
    assert "Traceback" not in output


@pytest_twisted.inlineCallbacks
def test_production_with_unmigrated_database_stops_and_says_what_to_run(tmp_path: Path):
    """Production does not migrate by itself: an empty database stops it with the command
    to run, exit status 1, without the 5 s stop announcement of a healthy production
    server; after `python -m installsure migrate` it starts."""
    secret = {"JWT_SECRET": secrets.token_urlsafe(48)}
    server = ServerProcess(tmp_path, "--environment", "production", env=secret)
    server.start()
    try:
        code = yield server.wait_exit(timeout=60)
    finally:
        server.kill()
    assert code == 1, server.output()
    assert "python -m installsure migrate" in server.output()
    assert "Traceback" not in server.output()
    assert "no delay, the process is stopping on an error" in server.output()

    migrate = subprocess.run(
        [sys.executable, "-m", "installsure", "migrate", "--data-dir", str(tmp_path / "data")],
        env=child_environment(), cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    # Production announces a stop for 5 s by default; this test is not about that.
    again = ServerProcess(tmp_path, "--environment", "production",
                          env={**secret, "INSTALLSURE_SHUTDOWN_DELAY": "0"}, port=server.port)
    again.start()
    try:
        yield again.wait_until("/readyz")
    finally:
        code = yield again.stop()
    assert code == 0


@pytest_twisted.inlineCallbacks
def test_queue_admin_routes_need_the_operator_token(tmp_path: Path):
    """/api/queue/* answer 401 without the operator token and work with it: status of
    every configured queue, pause/resume, 404 for an unknown queue, 400 for a bad state."""
    token = "t" * 40
    server = ServerProcess(tmp_path, "--environment", "test", env={"API_SECRET": token})
    server.start()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        yield server.wait_until("/readyz")
        anonymous = yield treq.get(server.base + "/api/queue/status")
        assert anonymous.code == 401
        assert (yield anonymous.json())["code"] == "UNAUTHENTICATED"
        wrong = yield treq.get(server.base + "/api/queue/status",
                               headers={"Authorization": "Bearer nope"})
        assert wrong.code == 401

        status = yield treq.get(server.base + "/api/queue/status", headers=auth)
        assert status.code == 200
        queues = (yield status.json())["data"]["queues"]
        assert set(queues) >= {"file-upload", "file-processing", "email-send",
                               "notification-push"}
        assert queues["email-send"]["isPaused"] is False
        assert queues["email-send"]["workers"] >= 1, "role all runs workers"

        paused = yield treq.post(server.base + "/api/queue/email-send/pause", headers=auth)
        assert paused.code == 200
        status = yield treq.get(server.base + "/api/queue/status", headers=auth)
        assert (yield status.json())["data"]["queues"]["email-send"]["isPaused"] is True
        resumed = yield treq.post(server.base + "/api/queue/email-send/resume", headers=auth)
        assert (yield resumed.json())["data"]["isPaused"] is False

        unknown = yield treq.get(server.base + "/api/queue/nope/jobs", headers=auth)
        assert unknown.code == 404
        assert (yield unknown.json())["code"] == "NOT_FOUND"
        bad = yield treq.get(server.base + "/api/queue/email-send/jobs?state=lost&perPage=0",
                             headers=auth)
        assert bad.code == 400
        fields = {d["field"] for d in (yield bad.json())["details"]}
        assert fields == {"state", "perPage"}
        listed = yield treq.get(server.base + "/api/queue/email-send/jobs?state=dead",
                                headers=auth)
        body = yield listed.json()
        assert listed.code == 200
        assert body["data"] == []
        assert body["meta"]["total"] == 0
    finally:
        code = yield server.stop()
    assert code == 0, server.output()


@pytest_twisted.inlineCallbacks
def test_ctrl_c_stops_in_order_and_redis_goes_last(tmp_path: Path):
    """SIGINT to the whole process group (Ctrl-C) stops the server in order: the
    embedded Redis is stopped by the server after the database, not by the signal."""
    server = ServerProcess(tmp_path, "--environment", "test")
    server.start()
    try:
        yield server.wait_until("/readyz")
        server.interrupt_group()
        code = yield server.wait_exit()
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output
    lines = output.splitlines()
    # redis-server itself only ever saw our SIGTERM.
    assert not [line for line in lines if "redis-server:" in line and "SIGINT" in line]

    def position(*needles: str) -> int:
        return next(i for i, line in enumerate(lines) if all(n in line for n in needles))

    assert position("database", "stopped") < position("redis-server (pid", "stopped")


@pytest_twisted.inlineCallbacks
def test_api_and_worker_start_side_by_side_in_one_directory(tmp_path: Path):
    """README's "Several processes": an api and a worker process started in the same
    directory, each with its own --pidfile, both run (without it, the second finds the
    first's twistd.pid and refuses), share the queues, and stop with status 0."""
    redis = RedisServerProcess(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis.start()
    shared = tmp_path / "node"
    token = secrets.token_urlsafe(48)
    api = ServerProcess(shared, env={"API_SECRET": token})
    worker = ServerProcess(shared)
    worker.log_path = shared / "worker.log"
    common = ["--environment", "test", "--redis-url", redis.url,
              "--data-dir", str(shared / "data")]
    api.command = lambda: [  # type: ignore[method-assign]
        str(TWISTD), "-n", "--pidfile", "api.pid", "installsure", "--role", "api",
        "--listen", f"tcp:{api.port}:interface=127.0.0.1", *common,
    ]
    worker.command = lambda: [  # type: ignore[method-assign]
        str(TWISTD), "-n", "--pidfile", "worker.pid", "installsure", "--role", "worker",
        *common,
    ]
    api.start()
    try:
        yield api.wait_until("/readyz")
        worker.start()
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while True:
            assert worker.process is not None
            assert worker.process.poll() is None, worker.output()
            status = yield treq.get(api.base + "/api/queue/status", headers=auth)
            queues = (yield status.json())["data"]["queues"]
            if queues["email-send"]["workers"] >= 1:
                break  # the worker's heartbeat reached the api (which runs none) via Redis
            assert time.monotonic() < deadline, worker.output()
            yield deferLater(reactor, 0.2, lambda: None)
        assert (shared / "api.pid").exists()
        assert (shared / "worker.pid").exists()
    finally:
        api_code = yield api.stop()
        worker_code = yield worker.stop()
        redis.kill()
    assert api_code == 0, api.output()
    assert worker_code == 0, worker.output()
