"""What the rest of InstallSure may ask of Redis.

Code outside ``installsure.redis`` depends on these protocols, not on txredisapi, so
the job runner, rate limiter and backplane can be tested against any implementation
and the client can change underneath them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias

from twisted.internet.defer import Deferred

RedisArg: TypeAlias = str | bytes | int | float

LONGEST_RECONNECT_DELAY = 1.0
"""Seconds the Redis client waits at most between attempts to reconnect: once Redis
listens again, every process using it is back within about this long."""


class RedisUnavailable(Exception):  # noqa: N818 - the name others already code against
    """Redis did not answer in time or is not connected; the caller may retry later."""


class RedisReplyError(Exception):
    """Redis answered with an error reply (``WRONGTYPE ...``, a Lua ``error()``, ...).

    Retrying the same command will fail the same way; ``code`` is the reply's first word
    when it is an upper-case error code (``WRONGTYPE``, ``NOSCRIPT``), else ``"ERR"``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        first = message.split(" ", 1)[0]
        self.code = first if first.isupper() and first.isalpha() else "ERR"


class LuaScript(Protocol):
    """A script loaded once and called by EVALSHA (reloaded transparently on NOSCRIPT)."""

    name: str
    sha: str

    def __call__(self, keys: Sequence[str], args: Sequence[RedisArg]) -> Deferred[Any]: ...


class BlockingRedis(Protocol):
    """A dedicated connection for blocking commands (BLMOVE, BZPOPMIN, ...).

    A blocking command stalls every other command queued on its connection, so these
    never share the pool.
    """

    def execute(self, command: str, *args: RedisArg, timeout: float) -> Deferred[Any]:
        """Run one command; fail with RedisUnavailable when no reply came within
        ``timeout`` seconds, so pass the command's own block time plus a margin."""
        ...

    def close(self) -> Deferred[None]: ...

    @property
    def is_connected(self) -> bool:
        """Whether the connection is up right now (a command would not wait for it)."""
        ...


class Subscription(Protocol):
    def cancel(self) -> Deferred[None]: ...

    @property
    def live(self) -> bool:
        """Whether Redis confirms the subscription on the connection up right now: while
        it is not, messages published to it are lost."""
        ...


MessageCallback: TypeAlias = Callable[[str, str], object]
"""Called with ``(channel, message)`` for each message received."""

GapCallback: TypeAlias = Callable[[], object]
"""Called when a subscription is confirmed again after its connection was lost: the
messages published meanwhile never arrived, so what they would have said must be
found out another way."""


class RedisCommands(Protocol):
    """Ordinary commands over a pooled connection, each bounded by the command timeout."""

    key_prefix: str

    def key(self, *parts: str) -> str:
        """``key_prefix`` + parts joined by ``:``."""
        ...

    def execute(self, command: str, *args: RedisArg) -> Deferred[Any]: ...

    def script(self, name: str, source: str) -> LuaScript: ...

    def blocking_connection(self) -> BlockingRedis: ...

    def publish(self, channel: str, message: str) -> Deferred[int]: ...

    def subscribe(self, channel: str, callback: MessageCallback, *,
                  on_gap: GapCallback | None = None) -> Deferred[Subscription]:
        """Subscribe (re-subscribed automatically after a reconnect, then ``on_gap()``
        is called)."""
        ...

    def psubscribe(self, pattern: str, callback: MessageCallback, *,
                   on_gap: GapCallback | None = None) -> Deferred[Subscription]: ...

    def ping(self) -> Deferred[float]:
        """Round-trip latency in milliseconds."""
        ...

    def on_connected(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback()`` whenever a pooled connection is made: at start, and the
        moment Redis can be reached again after an outage (so a caller pausing between
        retries need not wait out its pause). Returns what unregisters it."""
        ...
