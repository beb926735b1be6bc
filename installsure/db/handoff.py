"""Handing blocking calls to a thread pool in batches, one per reactor turn.

Each call handed to a pool on its own costs the wake-up of a sleeping thread (a futex
call and a context switch) and, on return, a wake-up of the reactor (a write to its
waker pipe). Under load one reactor turn starts many database calls, one per request
read in that turn, and on one core those wake-ups cost more than SQLite spends
answering. So :class:`BatchedHandoff` queues the calls made during a turn and hands
them over when the turn ends (``callLater(0)``): up to ``lanes`` pool threads then take
calls from that batch one after another, each call with its own outcome, and return
the outcomes to the reactor together, as soon as their batch is done or every few
milliseconds while a long one runs. A lone call waits only for the rest of its turn.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

#: A lane with outcomes waiting returns them at least this often (seconds) while it
#: still has calls to make, so a slow call does not hold back the answers before it.
RETURN_EVERY = 0.002

_Call = tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]
_Outcome = tuple[Deferred[Any], bool, Any]


class BatchedHandoff:
    """Runs blocking calls on ``pool`` (see the module docstring).

    ``reactor`` provides ``callLater`` and ``callFromThread``; ``lanes`` is how many pool
    threads may work on one batch (the pool's size).
    """

    def __init__(self, reactor: Any, pool: ThreadPool, lanes: int) -> None:
        self._reactor = reactor
        self._pool = pool
        self._lanes = max(1, lanes)
        self._queued: list[_Call] = []
        self._flush_call: IDelayedCall | None = None

    def submit(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        """``f(*args)`` on a pool thread; the Deferred fires on the reactor thread."""
        d: Deferred[T] = Deferred()
        self._queued.append((f, args, d))
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)
        return d

    def fail_queued(self, failure: Failure) -> None:
        """Fail the calls not handed over yet (the pool is going away)."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        queued, self._queued = self._queued, []
        _deliver([(d, False, failure) for _f, _args, d in queued])

    def _flush(self) -> None:
        self._flush_call = None
        queued, self._queued = self._queued, []
        if not queued:
            return
        batch: deque[_Call] = deque(queued)
        for _ in range(min(self._lanes, len(queued))):
            self._pool.callInThread(self._work, batch)

    def _work(self, batch: deque[_Call]) -> None:
        """On a pool thread: take calls from ``batch`` until it is empty."""
        outcomes: list[_Outcome] = []
        returned_at = time.monotonic()
        while True:
            try:
                f, args, d = batch.popleft()
            except IndexError:
                break
            try:
                outcomes.append((d, True, f(*args)))
            except BaseException:
                outcomes.append((d, False, Failure()))  # type: ignore[no-untyped-call]
            now = time.monotonic()
            if batch and now - returned_at >= RETURN_EVERY:
                self._reactor.callFromThread(_deliver, outcomes)
                outcomes, returned_at = [], now
        if outcomes:
            self._reactor.callFromThread(_deliver, outcomes)


def _deliver(outcomes: list[_Outcome]) -> None:
    for d, succeeded, result in outcomes:
        if d.called:  # cancelled while it ran: its outcome has nobody to go to
            continue
        if succeeded:
            d.callback(result)
        else:
            d.errback(result)
