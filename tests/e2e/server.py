"""Run ``twistd -n installsure`` as a child process, the way operators do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import treq
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from tests.fixtures.redis import free_port

ROOT = Path(__file__).resolve().parents[2]
TWISTD = Path(sys.executable).parent / "twistd"


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment without config variables, with this checkout first on the path."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("INSTALLSURE_") and k not in ("PORT", "HOST", "REDIS_URL",
                                                          "NODE_ENV", "JWT_SECRET")
    }
    # The checkout's code, not an older installed copy, is what the tests exercise.
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class ServerProcess:
    """One ``twistd -n installsure`` child with its own data dir and port."""

    def __init__(self, directory: Path, *args: str, port: int | None = None,
                 env: dict[str, str] | None = None, twistd_args: Sequence[str] = (),
                 default_data_dir: bool = False, test_routes: bool = False) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.args = args
        self.env = child_environment(env)
        self.twistd_args = list(twistd_args)
        # Without --data-dir the server uses ./data, i.e. directory/data (its cwd).
        self.default_data_dir = default_data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "stdout.log"
        #: twistd itself, or twistd's entry point with the test-only routes of
        #: tests/e2e/twistd_with_routes.py.
        self.launcher = (
            [sys.executable, "-m", "tests.e2e.twistd_with_routes"] if test_routes
            else [str(TWISTD)]
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *self.launcher, *self.twistd_args, "--pidfile=", "-n", "installsure",
            *([] if self.default_data_dir else ["--data-dir", str(self.directory / "data")]),
            "--listen", f"tcp:{self.port}:interface=127.0.0.1",
            *self.args,
        ]

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(), cwd=self.directory, env=self.env,
                stdout=out, stderr=subprocess.STDOUT,
                # Its own process group, like a server started from a terminal.
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @defer.inlineCallbacks
    def wait_until(self, path: str, status: int = 200, timeout: float = 30.0):
        """Poll ``path`` until it answers ``status``; fail with the server's output."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                response = yield treq.get(self.base + path, timeout=2)
                last = response.code
                yield response.content()
                if response.code == status:
                    return response
            except Exception as exc:  # not listening yet
                last = repr(exc)
            yield deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"{path} never answered {status} (last: {last}):\n{self.output()}")

    def interrupt_group(self) -> None:
        """What Ctrl-C in a terminal does: SIGINT to the whole process group."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    @defer.inlineCallbacks
    def wait_exit(self, timeout: float = 40.0):
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"server did not exit within {timeout}s:\n{self.output()}")
            yield deferLater(reactor, 0.05, lambda: None)
        return self.process.returncode

    @defer.inlineCallbacks
    def stop(self, timeout: float = 40.0):
        """SIGTERM and wait: the exit status (killed after ``timeout``)."""
        self.terminate()
        code = yield self.wait_exit(timeout)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
