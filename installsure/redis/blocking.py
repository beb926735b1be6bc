"""Connections of their own for blocking commands (BLPOP, BLMOVE, XREAD BLOCK...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from installsure.redis._execute import run_on
from installsure.redis._link import _Link
from installsure.redis.interfaces import RedisArg, RedisUnavailable


class BlockingConnection:
    """One connection of its own for blocking commands (BLMOVE, BZPOPMIN, XREAD BLOCK).

    Commands on it run one after the other; a command that gets no reply within its
    ``timeout`` fails with RedisUnavailable and the connection is dropped and remade,
    because its reply would otherwise arrive in the place of the next command's. While
    the connection is down a command waits for it, within the same ``timeout``.
    ``on_close`` is told when the owner closes it.
    """

    def __init__(
        self,
        link: _Link,
        reactor: IReactorTime,
        on_close: Callable[[BlockingConnection], None] = lambda _: None,
    ) -> None:
        self._link = link
        self._reactor = reactor
        self._on_close = on_close

    @property
    def is_connected(self) -> bool:
        return self._link.connected

    def execute(self, command: str, *args: RedisArg, timeout: float) -> defer.Deferred[Any]:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        conn = self._link.pick()
        if conn is not None:
            return self._run(conn, timeout, timeout, (command, *args))
        # Reconnecting (or just made): spend the command's own time budget waiting for
        # the connection, so that a caller looping on blocking pops does not spin while
        # Redis is down.
        started = self._reactor.seconds()

        def connected(_: object) -> defer.Deferred[Any]:
            conn = self._link.pick()
            if conn is None:
                return defer.fail(RedisUnavailable(self._link.unavailable_message()))
            left = timeout - (self._reactor.seconds() - started)
            return self._run(conn, max(left, 0.001), timeout, (command, *args))

        return self._link.when_connected(timeout).addCallback(connected)

    def _run(
        self, conn: Any, timeout: float, shown: float, args: tuple[Any, ...]
    ) -> defer.Deferred[Any]:
        link = self._link
        reply = run_on(link, conn, None, args)

        def drop_connection() -> None:
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abortConnection()

        def cancel(result: defer.Deferred[Any]) -> None:
            # The command is still pending inside Redis; only closing the connection
            # makes sure its late reply cannot be taken for another command's.
            drop_connection()

        result: defer.Deferred[Any] = defer.Deferred(cancel)

        def expire() -> None:
            if not result.called:
                result.errback(RedisUnavailable(link.unavailable_message(shown)))
                drop_connection()

        call = self._reactor.callLater(timeout, expire)

        def settle(value: object) -> None:
            if call.active():
                call.cancel()
            if result.called:
                return
            if isinstance(value, Failure):
                result.errback(value)
            else:
                result.callback(value)

        reply.addBoth(settle)
        return result

    def close(self) -> defer.Deferred[None]:
        self._on_close(self)
        return self.disconnect()

    def disconnect(self) -> defer.Deferred[None]:
        """Close the connection without telling the owner (the owner is stopping)."""
        return self._link.stop()
