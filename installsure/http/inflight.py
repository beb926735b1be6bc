"""The requests an API resource is handling right now: waiting for none to be left, and
answering the last ones 503 when a shutdown's grace runs out."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure import metrics

log = Logger(namespace="installsure.http")

CUT = metrics.counter(
    "installsure_shutdown_requests_cut",
    "HTTP requests still running at the end of the shutdown grace, answered 503.",
)


class InFlight:
    """Counts requests between :meth:`started` and :meth:`finished` (also in the
    ``/metrics`` gauge), and knows those answered later (:meth:`later`): they are the
    ones a drain waits for, and :meth:`cut` answers at the end of the grace."""

    def __init__(self) -> None:
        self.count = 0
        self._idle_waiters: list[defer.Deferred[int]] = []
        #: Requests answered later (a Deferred handler): what answers each of them now.
        self._later: dict[Callable[[], None], None] = {}

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

    def later(self, cut: Callable[[], None]) -> None:
        """A request is answered later; ``cut()`` would answer it now instead."""
        self._later[cut] = None

    def answered(self, cut: Callable[[], None]) -> None:
        """The request of :meth:`later`'s ``cut`` is answered (or its client gone)."""
        self._later.pop(cut, None)

    def cut(self) -> int:
        """Answer every request still running (their handlers' Deferreds are
        cancelled); how many there were."""
        cuts, self._later = list(self._later), {}
        for cut in cuts:
            cut()
        CUT.inc(len(cuts))
        return len(cuts)

    def when_idle(self) -> defer.Deferred[int]:
        """Fires with 0 once no request is in flight."""
        if self.count == 0:
            return defer.succeed(0)
        waiter: defer.Deferred[int] = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def drain(self, grace: float, clock: IReactorTime | None = None) -> defer.Deferred[int]:
        """Fires with 0 once no request is in flight, or after ``grace`` seconds with the
        number still running."""
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
