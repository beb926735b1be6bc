"""How the workers of one process behave and report while Redis does not answer.

Every activity of a worker (claiming, reporting results, heartbeat, sweeping) keeps an
``Outage``: a pause between its attempts that grows while Redis fails. All of them
share one ``OutageLog``, so an operator reads one warning when Redis goes away and one
line when it is back, however many loops notice it.
"""

from __future__ import annotations

import time

from attrs import define
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
    back do not count as a new outage."""

    failing: bool = False
    warned: bool = False
    back_at: float = -1e9

    def down(self, what: str, error: BaseException) -> None:
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
