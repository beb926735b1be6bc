"""A command sent while a reply is handled leaves at once, not on the reactor's next
turn: against a fake server (a thread speaking RESP on a real socket) that answers two
commands in one write."""

from __future__ import annotations

import socket
import threading

import pytest_twisted
from twisted.internet import defer

from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget


class TwoInOneServer:
    """Reads commands; answers FIRST and SECOND together, in one write, once both came;
    notes when THIRD arrives (``third``) and answers it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.third = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            buffer = b""
            pending: list[str] = []
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while True:
                    parsed = _command(buffer)
                    if parsed is None:
                        break
                    name, buffer = parsed
                    if name in ("FIRST", "SECOND"):
                        pending.append(name)
                        if len(pending) == 2:
                            conn.sendall(b"+1\r\n+2\r\n")
                    elif name == "THIRD":
                        self.third.set()
                        conn.sendall(b"+3\r\n")
                    else:  # whatever the client sends on connecting
                        conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self._listener.close()


def _command(buffer: bytes) -> tuple[str, bytes] | None:
    """The first whole RESP command of ``buffer`` (its name) and the rest, or None."""
    lines = buffer.split(b"\r\n")
    if len(lines) < 2 or not lines[0].startswith(b"*"):
        return None
    count = int(lines[0][1:])
    if len(lines) < 1 + 2 * count + 1:
        return None
    words = [lines[2 + 2 * i] for i in range(count)]
    rest = b"\r\n".join(lines[1 + 2 * count:])
    return words[0].decode().upper(), rest


@pytest_twisted.ensureDeferred
async def test_a_command_sent_in_answer_to_a_reply_leaves_before_the_next_reply() -> None:
    """Two replies arrive in one read. The first one's callback sends THIRD; when the
    second one's callback runs, the server already has THIRD (it was written at once,
    not after every reply of that read was handled)."""
    server = TwoInOneServer()
    redis = RedisService(
        RedisTarget(host="127.0.0.1", port=server.port), pool_size=1, command_timeout=5.0
    )
    redis.startService()
    try:
        await redis.when_connected(5)
        seen: list[bool] = []
        first = redis.execute("FIRST")
        second = redis.execute("SECOND")
        third: list[defer.Deferred[object]] = []
        first.addCallback(lambda _: third.append(redis.execute("THIRD")))
        # Blocks the reactor (at most 2 s): THIRD can only reach the server meanwhile
        # if it was written before this callback ran.
        second.addCallback(lambda _: seen.append(server.third.wait(2.0)))
        await defer.gatherResults([first, second])
        assert seen == [True]
        assert await third[0] == "3"
    finally:
        await redis.stopService()
        server.close()
