"""The requests an API resource is handling right now, and waiting for none to be left."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure import metrics

log = Logger(namespace="installsure.http")


class InFlight:
    """Counts requests between :meth:`started` and :meth:`finished` (also in the
    ``/metrics`` gauge), and fires :meth:`drain`'s Deferreds when none is left."""

    def __init__(self) -> None:
        self.count = 0
        self._idle_waiters: list[defer.Deferred[int]] = []

    def started(self) -> None:
        metrics.HTTP_STATS.in_flight += 1
        self.count += 1

    def finished(self) -> None:
        metrics.HTTP_STATS.in_flight -= 1
        self.count -= 1
        if self.count == 0 and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(0)

    def drain(self, grace: float, clock: IReactorTime | None = None) -> defer.Deferred[int]:
        """A drain hook: fires with 0 once no request is in flight, or after ``grace``
        seconds with the number still running (the caller then closes connections)."""
        if self.count == 0:
            return defer.succeed(0)
        if clock is None:
            from twisted.internet import reactor as _reactor

            clock = _reactor
        assert clock is not None  # noqa: S101 - for mypy
        waiter: defer.Deferred[int] = defer.Deferred()
        self._idle_waiters.append(waiter)

        def give_up() -> None:
            if waiter in self._idle_waiters:
                self._idle_waiters.remove(waiter)
                log.warn(
                    "{count} HTTP requests still running after the {grace}s grace period",
                    count=self.count,
                    grace=grace,
                )
                waiter.callback(self.count)

        timer = clock.callLater(grace, give_up)

        def stop_timer(count: int) -> int:
            if timer.active():
                timer.cancel()
            return count

        waiter.addCallback(stop_timer)
        return waiter
