"""The idle timeout of the fast wire's channel: one DelayedCall per connection.

HTTPChannel switches its idle timeout off for every request and back on after it
(TimeoutMixin.setTimeout(None), then setTimeout(period)), and moves it on every read: a
cancelled and a new DelayedCall, or a reset, several times per request, more work than
parsing the request. Here a connection keeps one DelayedCall that is not touched per
request: activity only notes the time (which a shutdown's drain reads too, see
``ApiChannel.last_active``), and when the call fires it closes the connection if it has
been idle for the whole period, or schedules itself for the rest of it. While the
timeout is off (a request in progress) a firing call does nothing; switching the
timeout back on notes the time again.
"""

from __future__ import annotations

from typing import Any

from twisted.web import http


class IdleTimeoutChannel(http.HTTPChannel):
    """``HTTPChannel`` with the idle timeout of the module docstring."""

    _idle_call: Any = None
    _idle_clock: Any = None
    _idle_since = 0.0
    _idle_period: float | None = None

    def setTimeout(self, period: float | None) -> float | None:
        previous = self.timeOut
        self.timeOut = period  # type: ignore[assignment]
        if period is not None:
            call = self._idle_call
            if call is None or period != self._idle_period:
                if call is not None and call.active():
                    call.cancel()
                self._schedule_idle_check(period)
            self._idle_since = self._idle_clock()
        return previous

    def resetTimeout(self) -> None:
        if self._idle_call is not None:
            self._idle_since = self._idle_clock()

    def _schedule_idle_check(self, delay: float) -> None:
        call = self.callLater(delay, self._idle_check)  # type: ignore[no-untyped-call]
        self._idle_call = call
        self._idle_clock = call.seconds
        self._idle_period = self.timeOut

    def _idle_check(self) -> None:
        self._idle_call = None
        period = self.timeOut
        if period is None:  # off while a request is in progress; setTimeout re-arms
            return
        left = self._idle_since + period - self._idle_clock()
        if left > 0:
            self._schedule_idle_check(left)
        else:
            self.timeoutConnection()  # type: ignore[no-untyped-call]
