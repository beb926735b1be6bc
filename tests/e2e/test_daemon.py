"""End to end: ``twistd installsure`` daemonized (no ``-n``), as an init script runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.e2e.server import TWISTD, child_environment
from tests.fixtures.redis import RedisServerProcess, free_port

pytestmark = pytest.mark.e2e

REQUESTS = 5


def daemon_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet reaped by whoever adopted it, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state not in ("Z", "X")
    return True


def access_ids(logfile: Path) -> set[str]:
    """Request ids of the access events in the (JSON lines) log so far."""
    found = set()
    for line in logfile.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("namespace") == "installsure.access":
                found.add(event.get("requestId"))
    return found


@pytest_twisted.inlineCallbacks
def test_daemonized_server_writes_access_lines_at_once_and_loses_none_to_sigkill(
    tmp_path: Path,
):
    """Daemonized with --pidfile and --logfile, the server writes each request's access
    line within about a second without being stopped (the log flusher runs in the
    daemon, not only in the process twistd forked it from), so SIGKILL loses none."""
    redis = RedisServerProcess(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis.start()
    pidfile, logfile, port = tmp_path / "twistd.pid", tmp_path / "server.log", free_port()
    pid = None
    try:
        started = subprocess.run(
            [str(TWISTD), f"--pidfile={pidfile}", f"--logfile={logfile}", "installsure",
             "--data-dir", str(tmp_path / "data"), "--environment", "test",
             "--listen", f"tcp:{port}:interface=127.0.0.1", "--redis-url", redis.url],
            env=child_environment({"INSTALLSURE_LOGGING_FORMAT": "json"}),
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )
        pid = daemon_pid(pidfile)
        assert started.returncode == 0, started.stdout + started.stderr
        assert pid is not None, "no pidfile"

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = yield treq.get(base + "/livez", timeout=2)
                yield response.content()
                break
            except Exception:  # not listening yet
                assert time.monotonic() < deadline, logfile.read_text(errors="replace")
                yield deferLater(reactor, 0.1, lambda: None)

        ids = {f"daemon-e2e-{n}" for n in range(REQUESTS)}
        for request_id in sorted(ids):
            response = yield treq.get(base + "/livez", headers={"X-Request-ID": request_id})
            assert response.code == 200
            yield response.content()
        sent = time.monotonic()
        while not ids <= access_ids(logfile) and time.monotonic() - sent < 1.5:
            yield deferLater(reactor, 0.05, lambda: None)
        written = time.monotonic() - sent
        assert ids <= access_ids(logfile), (
            f"after {written:.1f}s the log lacks {sorted(ids - access_ids(logfile))}")
        assert alive(pid), "the server was not stopped to get its lines out"

        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            yield deferLater(reactor, 0.05, lambda: None)
        assert not alive(pid)
        assert ids <= access_ids(logfile), "SIGKILL lost access lines"
    finally:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)
        redis.kill()
