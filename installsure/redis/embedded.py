"""A ``redis-server`` child process for machines where no Redis URL is configured.

It listens only on a unix socket in the data directory (no TCP port) and keeps an
append-only file there, so queued jobs survive restarts. Its log lines are re-logged
through twisted.logger; if it dies it is started again with exponential backoff.

MultiService cannot wait for a Deferred from ``startService``, so readiness is exposed
as :meth:`EmbeddedRedisService.when_running`; the Redis client is started after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections import deque
from pathlib import Path
from typing import Any, Literal

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from installsure.redis.embedded_checks import (
    EmbeddedRedisError,
    check_data_dir,
    find_redis_server_binary,
    is_executable,
    probe_socket,
)
from installsure.redis.target import RedisTarget

log = Logger(namespace="installsure.redis.embedded")

State = Literal["stopped", "starting", "running", "restarting", "failed"]

_INITIAL_RESTART_DELAY = 0.5
# A redis-server that never became ready this many times in a row will not: give up.
_MAX_FAILED_FIRST_STARTS = 3

# redis-server log line markers: "<pid>:<role> <date> <time> <marker> <message>".
_LEVELS = {".": LogLevel.debug, "-": LogLevel.debug, "*": LogLevel.info, "#": LogLevel.warn}
# Redis logs its routine start and stop at warning level; they are not worth a warning.
_ROUTINE = (
    "oO0OoO0OoO0Oo", "Redis version=", "Configuration loaded", "Server initialized",
    "User requested shutdown", "Redis is now ready to exit", "Saving the final RDB",
)


# Run in the child between fork and redis-server: SIGTERM it when its parent dies
# (Linux prctl PR_SET_PDEATHSIG = 1), and give it a session of its own, so a Ctrl-C in
# the terminal (SIGINT to the whole foreground group) reaches only us: Redis must
# outlive our drain, which puts unfinished jobs back, and we stop it after. Then exec.
# Twisted's spawnProcess offers no pre-exec hook, hence a tiny interpreter in between;
# both survive the exec.
_EXEC_WITH_PARENT_DEATH_SIGNAL = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
os.setsid()
if os.getppid() != int(sys.argv[1]):
    sys.exit("installsure: parent exited before redis-server could start")
os.execv(sys.argv[2], sys.argv[2:])
"""


class _RedisProcess(protocol.ProcessProtocol):
    """The child's output, line by line, into our log; its end to the service."""

    def __init__(self, service: EmbeddedRedisService) -> None:
        self._service = service
        self._partial = {1: b"", 2: b""}
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            self._relog(line)

    def _relog(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip()
        if not text:
            return
        level = LogLevel.info
        # "1234:M 30 Nov 2026 03:50:00.123 * Ready to accept connections"
        parts = text.split(" ", 6)
        if len(parts) == 7 and ":" in parts[0] and parts[5] in _LEVELS:
            level = _LEVELS[parts[5]]
            text = parts[6]
            if level == LogLevel.warn and text.startswith(_ROUTINE):
                level = LogLevel.info
        self._service.recent_output.append(text)
        log.emit(level, "redis-server: {line}", line=text, redis_pid=self.pid)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._relog(rest)
            self._partial[fd] = b""
        self._service._process_ended(self, reason)
        self.ended.callback(None)


class EmbeddedRedisService(Service):
    """Runs and supervises one redis-server on ``data_dir/redis.sock``.

    ``max_restart_delay`` caps the backoff between restarts (0.5 s, doubling), which
    starts over once a child stayed up ``stable_after`` seconds; ``ready_timeout`` is how
    long a new child may take to answer PING; ``kill_after`` how long stopService waits
    after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        reactor: Any = None,
        max_restart_delay: float = 30.0,
        ready_timeout: float = 10.0,
        stable_after: float = 30.0,
        kill_after: float = 10.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.data_dir = Path(data_dir)
        self.socket_path = self.data_dir / "redis.sock"
        self.binary = binary
        self.max_restart_delay = max_restart_delay
        self.ready_timeout = ready_timeout
        self.stable_after = stable_after
        self.kill_after = kill_after
        self.state: State = "stopped"
        self.error: str | None = None
        self._reactor: IReactorTime = reactor
        self._process: _RedisProcess | None = None
        self._restart_delay = _INITIAL_RESTART_DELAY
        self._restart_call: Any = None
        self._started_at = 0.0
        self._waiting: list[defer.Deferred[None]] = []
        self._stopping = False
        self._ever_ready = False
        self._failed_starts = 0
        # The child's last lines, quoted when it cannot start at all.
        self.recent_output: deque[str] = deque(maxlen=8)

    @property
    def target(self) -> RedisTarget:
        """Where the Redis client service should connect."""
        return RedisTarget.for_unix_socket(str(self.socket_path))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def when_running(self) -> defer.Deferred[None]:
        """Fires when redis-server answers PING; EmbeddedRedisError if it cannot run."""
        if self.state == "running":
            return defer.succeed(None)
        if self.state == "failed":
            return defer.fail(EmbeddedRedisError(self.error or "the embedded Redis failed"))
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d

    # --- service

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._stopping = False
        self._ever_ready = False
        self._failed_starts = 0
        self._restart_delay = _INITIAL_RESTART_DELAY
        self._set_state("starting")
        defer.ensureDeferred(self._first_start()).addErrback(self._unexpected)

    async def _first_start(self) -> None:
        try:
            check_data_dir(self.data_dir)
            if self.binary is None:
                self.binary = find_redis_server_binary()
            elif not is_executable(self.binary):
                raise EmbeddedRedisError(
                    f"the configured redis-server binary {self.binary!r} does not exist or "
                    "is not executable"
                )
            if self.socket_path.exists() or self.socket_path.is_symlink():
                reply = await probe_socket(self._reactor, str(self.socket_path))
                if reply is not None and reply[:1] in (b"+", b"-"):
                    raise EmbeddedRedisError(
                        f"another redis-server already answers on {self.socket_path}: "
                        f"data directory {str(self.data_dir)!r} is in use by another "
                        "InstallSure (or Redis) process; stop it or choose another --data-dir"
                    )
                log.info("removing stale Redis socket {path} left by a previous crash",
                         path=str(self.socket_path))
                with contextlib.suppress(FileNotFoundError):
                    self.socket_path.unlink()
        except EmbeddedRedisError as e:
            self._fail(str(e))
            return
        if not self._stopping:
            await self._spawn()

    async def _spawn(self) -> None:
        if self.binary is None:  # pragma: no cover - _first_start sets it
            raise EmbeddedRedisError("no redis-server binary")
        args = [
            self.binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",
        ]
        executable = self.binary
        if sys.platform.startswith("linux"):
            # If we die without stopping it (kill -9, OOM killer), it must not live on
            # holding the data directory: the next start would find it "in use".
            executable = sys.executable
            args = [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, str(os.getpid()),
                    *args]
        process = _RedisProcess(self)
        self._process = process
        reactor: IReactorProcess = self._reactor  # type: ignore[assignment]
        try:
            reactor.spawnProcess(process, executable, args, env=dict(os.environ),
                                 path=str(self.data_dir))
        except OSError as e:
            self._process = None
            self._fail(f"cannot start {self.binary}: {e.strerror or e}")
            return
        log.info("started redis-server (pid {pid}) on {path}", pid=process.pid,
                 path=str(self.socket_path))
        self._started_at = self._reactor.seconds()
        await self._wait_until_ready(process)

    async def _wait_until_ready(self, process: _RedisProcess) -> None:
        deadline = self._reactor.seconds() + self.ready_timeout
        while process is self._process and not process.ended.called:
            reply = await probe_socket(self._reactor, str(self.socket_path), timeout=0.5)
            # "-LOADING": up, but still reading the append-only file; not ready yet.
            if reply is not None and reply.startswith(b"+PONG"):
                if process is self._process and not process.ended.called:
                    self._ever_ready = True
                    self._failed_starts = 0
                    self._set_state("running")
                    log.info("embedded Redis is ready (pid {pid})", pid=process.pid)
                return
            if self._reactor.seconds() > deadline:
                log.error("redis-server (pid {pid}) did not answer PING within {timeout}s; "
                          "killing it", pid=process.pid, timeout=self.ready_timeout)
                self._signal(process, signal.SIGKILL)
                return
            await _sleep(self._reactor, 0.05)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        self._restart_call = None
        process = self._process
        if process is None or process.ended.called:
            self._set_state("stopped")
            return defer.succeed(None)
        # SIGTERM lets redis-server flush and fsync the append-only file.
        self._signal(process, signal.SIGTERM)
        kill = self._reactor.callLater(self.kill_after, self._kill_late, process)
        ended = defer.Deferred[None]()

        def gone(_: object) -> None:
            if kill.active():
                kill.cancel()
            ended.callback(None)

        process.ended.addBoth(gone)
        return ended

    def _kill_late(self, process: _RedisProcess) -> None:
        log.warn(
            "redis-server (pid {pid}) did not exit {seconds}s after SIGTERM; killing it",
            pid=process.pid,
            seconds=self.kill_after,
        )
        self._signal(process, signal.SIGKILL)

    def _signal(self, process: _RedisProcess, signum: int) -> None:
        transport = process.transport
        if transport is not None:
            with contextlib.suppress(error.ProcessExitedAlready):
                transport.signalProcess(signum)

    # --- events

    def _process_ended(self, process: _RedisProcess, reason: Failure) -> None:
        if process is not self._process:
            return
        self._process = None
        if self._stopping:
            log.info("redis-server (pid {pid}) stopped", pid=process.pid)
            self._set_state("stopped")
            return
        up_for = self._reactor.seconds() - self._started_at
        if up_for >= self.stable_after:
            self._restart_delay = _INITIAL_RESTART_DELAY
        delay = self._restart_delay
        self._restart_delay = min(self._restart_delay * 2, self.max_restart_delay)
        status = reason.value
        exit_code = getattr(status, "exitCode", None)
        signal_number = getattr(status, "signal", None)
        how = f"signal {signal_number}" if signal_number else f"exit code {exit_code}"
        if not self._ever_ready:
            self._failed_starts += 1
            if self._failed_starts >= _MAX_FAILED_FIRST_STARTS:
                self._fail(
                    f"redis-server exited ({how}) {self._failed_starts} times before it "
                    "was ready; its last output: " + " | ".join(self.recent_output)
                )
                return
        log.error("redis-server (pid {pid}) died unexpectedly ({how}) after {up_for:.1f}s; "
                  "restarting in {delay}s", pid=process.pid, how=how, up_for=up_for,
                  delay=delay)
        self._set_state("restarting")
        self._restart_call = self._reactor.callLater(delay, self._restart)

    def _restart(self) -> None:
        self._restart_call = None
        if self._stopping:
            return
        with contextlib.suppress(FileNotFoundError):
            # A killed redis-server leaves its socket file behind.
            self.socket_path.unlink()
        defer.ensureDeferred(self._spawn()).addErrback(self._unexpected)

    def _set_state(self, state: State) -> None:
        self.state = state
        if state == "running":
            self.error = None
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def _fail(self, message: str) -> None:
        self.error = message
        self.state = "failed"
        log.error("embedded Redis cannot run: {message}", message=message)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(EmbeddedRedisError(message))

    def _unexpected(self, failure: Failure) -> None:
        log.failure("embedded Redis supervision failed", failure)
        self._fail(f"internal error: {failure.getErrorMessage()}")


def _sleep(reactor: IReactorTime, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


__all__ = [
    "EmbeddedRedisError",
    "EmbeddedRedisService",
    "check_data_dir",
    "find_redis_server_binary",
    "probe_socket",
]
