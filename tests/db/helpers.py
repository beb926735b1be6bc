"""Small helpers shared by the database tests."""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred

T = TypeVar("T")

WAIT = 15.0
"""Upper bound for anything a test awaits: a hung test fails instead of hanging."""


def within(d: Deferred[T], seconds: float = WAIT) -> Deferred[T]:
    """``d``, failing with a timeout after ``seconds``."""
    return d.addTimeout(seconds, reactor)  # type: ignore[arg-type]


def signal_from_thread() -> tuple[Deferred[None], Any]:
    """A Deferred the reactor awaits, and a function a pool thread calls to fire it."""
    d: Deferred[None] = Deferred()
    return d, lambda: reactor.callFromThread(d.callback, None)  # type: ignore[attr-defined]
