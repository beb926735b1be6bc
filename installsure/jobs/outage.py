"""How the workers of one process behave and report while Redis does not answer.

Every activity of a worker (claiming, reporting results, heartbeat, sweeping) keeps an
``Outage``: a pause between its attempts that grows while Redis fails. All of them
share one ``OutageLog``, so an operator reads one warning when Redis goes away and one
line when it is back, however many loops notice it. The pauses end early the moment
Redis answers again: when one activity gets an answer, or a connection to Redis is
made (``back()``), every paused activity tries at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger(namespace="installsure.jobs.worker")

QUIET_AFTER_RECOVERY = 10.0
"""Seconds after a recovery in which new errors are not a new outage."""

_FIRST_PAUSE = 0.25
_LONGEST_PAUSE = 5.0


@define
class OutageLog:
    """One warning when Redis goes away and one line when it is back, for a whole
    worker service. Errors from loops that are still reconnecting just after Redis came
    back do not count as a new outage.

    ``outages`` counts the outages seen (a loop that failed after the last success of
    any loop starts a new one); ``on_back`` are called whenever Redis may answer again.
    """

    failing: bool = False
    warned: bool = False
    back_at: float = -1e9
    outages: int = 0
    on_back: list[Callable[[], object]] = field(factory=list)
    _pauses: list[Deferred[None]] = field(factory=list)

    def down(self, what: str, error: BaseException) -> None:
        if not self.failing:
            self.outages += 1
        self.failing = True
        if not self.warned and time.monotonic() - self.back_at > QUIET_AFTER_RECOVERY:
            log.warn(
                "Redis is unavailable ({what}): {error}; workers pause until it answers",
                what=what, error=error,
            )
            self.warned = True

    def up(self, what: str) -> None:
        if self.failing:
            if self.warned:
                log.info("Redis answers again ({what}); workers resume", what=what)
            self.failing = False
            self.warned = False
            self.back_at = time.monotonic()
            self.back()

    def back(self) -> None:
        """Redis may answer again (a connection was made, or a loop got an answer):
        end every pause now and tell ``on_back``."""
        pauses, self._pauses = self._pauses, []
        for d in pauses:
            if not d.called:
                d.callback(None)
        for callback in list(self.on_back):
            try:
                callback()
            except Exception:
                log.failure("a worker's reconnect hook failed")

    def pause(self, reactor: IReactorTime, seconds: float) -> Deferred[None]:
        """Fires after ``seconds``, or at ``back()`` if that comes first; cancellable."""
        call: Any = None

        def cancel(d: Deferred[None]) -> None:
            if call is not None and call.active():
                call.cancel()
            if d in self._pauses:
                self._pauses.remove(d)

        d: Deferred[None] = Deferred(cancel)

        def done(result: object) -> object:
            if call is not None and call.active():
                call.cancel()
            if d in self._pauses:
                self._pauses.remove(d)
            return result

        d.addBoth(done)
        self._pauses.append(d)
        call = reactor.callLater(seconds, lambda: None if d.called else d.callback(None))
        return d


@define
class Outage:
    """A growing pause between attempts of one activity while Redis fails."""

    what: str
    log: OutageLog
    delay: float = 0.0

    def failed(self, error: BaseException) -> float:
        """Note a failure; returns the seconds to wait before the next attempt."""
        self.log.down(self.what, error)
        self.delay = min(_LONGEST_PAUSE, max(_FIRST_PAUSE, self.delay * 2))
        return self.delay

    def succeeded(self) -> None:
        if self.delay:
            self.log.up(self.what)
        self.delay = 0.0

    def pause(self, reactor: IReactorTime) -> Deferred[None]:
        """The pause before the next attempt, ended early when Redis is back."""
        return self.log.pause(reactor, self.delay)
