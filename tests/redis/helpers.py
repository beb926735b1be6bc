"""Small awaitables for the Redis tests: bounded waits, never sleeps on a guess."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet import defer, reactor, task

T = TypeVar("T")


def within(seconds: float, d: defer.Deferred[T]) -> defer.Deferred[T]:
    """``d``, failing with TimeoutError after ``seconds`` (a hung test is a failed test)."""
    return d.addTimeout(seconds, reactor)  # type: ignore[arg-type]


async def eventually(
    attempt: Callable[[], Awaitable[Any]], *, seconds: float = 10.0, interval: float = 0.05
) -> Any:
    """Retry ``attempt`` until it succeeds or ``seconds`` have passed (then re-raise)."""
    deadline = reactor.seconds() + seconds  # type: ignore[attr-defined]
    while True:
        try:
            return await attempt()
        except Exception:
            if reactor.seconds() > deadline:  # type: ignore[attr-defined]
                raise
        await task.deferLater(reactor, interval, lambda: None)  # type: ignore[arg-type]


class Inbox:
    """Collects pub/sub messages; ``next()`` waits for the next one."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self._waiting: list[defer.Deferred[tuple[str, str]]] = []

    def __call__(self, channel: str, message: str) -> None:
        self.messages.append((channel, message))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:  # timed out meanwhile
                d.callback((channel, message))

    def next(self, seconds: float = 5.0) -> defer.Deferred[tuple[str, str]]:
        d: defer.Deferred[tuple[str, str]] = defer.Deferred()
        self._waiting.append(d)
        return within(seconds, d)
