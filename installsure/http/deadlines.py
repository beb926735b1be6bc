"""Deadlines for reading a request: its head, and its body at a minimum rate.

The idle timeout restarts with every byte received, so by itself it lets a client that
sends one byte a second hold a connection open for ever (slowloris). Two more clocks
bound the time a request may take to arrive:

* the whole head (request line and headers) must arrive within ``header_timeout``
  seconds of its first byte (as Node's ``headersTimeout`` and nginx's
  ``client_header_timeout``);
* a body then has ``body_timeout`` seconds, and one second more for every
  ``body_min_rate`` bytes received (as Apache's ``mod_reqtimeout``): a large upload on
  a slow but steady link goes on, a trickle does not.

A request that misses its deadline is answered 408 and its connection closed. Neither
clock runs while the application handles a request: that is the server's time, not
the client's.

:class:`ReadDeadline` keeps both clocks for one connection, with one DelayedCall that
exists only while a request is being read across several reads; the connection says
which part of a request it is reading. Only public Twisted API here: both wires use it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from attrs import frozen
from twisted.internet.interfaces import IDelayedCall

from installsure.http.refusal import Refusal


class Reading(enum.Enum):
    """The part of a request a connection is waiting for."""

    HEAD = "head"
    BODY = "body"


#: What a connection reports: nothing (idle, or a request is being handled), or the part
#: it is reading, how many bytes of a body have arrived, and which request of the
#: connection this is (any number that changes from one request to the next).
Progress = tuple[Reading, int, int] | None


@frozen
class RequestDeadlines:
    """``http.header_timeout``, ``http.body_timeout`` and ``http.body_min_rate``."""

    header_timeout: float
    body_timeout: float
    #: Bytes per second; 0: the whole body within ``body_timeout``.
    body_min_rate: int

    def due(self, reading: Reading, since: float, received: int) -> float:
        """When the part being read, begun at ``since``, must be complete."""
        if reading is Reading.HEAD:
            return since + self.header_timeout
        extension = received / self.body_min_rate if self.body_min_rate else 0.0
        return since + self.body_timeout + extension

    def refusal(self, reading: Reading) -> Refusal:
        """The 408 for a request that missed its deadline."""
        if reading is Reading.HEAD:
            message = (
                f"The request head did not arrive within {self.header_timeout:g} seconds."
            )
        else:
            message = (
                f"The request body did not arrive in time ({self.body_timeout:g} seconds, "
                f"and one more for every {self.body_min_rate} bytes)."
            )
        return Refusal(408, b"Request Timeout", "REQUEST_TIMEOUT", message)


def clock_of(call_later: Callable[..., IDelayedCall]) -> Callable[[], float]:
    """The ``seconds`` of the clock a bound ``callLater`` belongs to: the reactor's, or
    a test's ``Clock`` (a channel's ``callLater`` is the site reactor's)."""
    seconds = getattr(getattr(call_later, "__self__", None), "seconds", None)
    if seconds is None:
        from twisted.internet import reactor

        seconds = reactor.seconds
    return seconds


class ReadDeadline:
    """One connection's clocks on the request it is reading.

    ``progress`` says what the connection is reading (see :data:`Progress`);
    :meth:`observe` is called after every read that may have left a request unfinished,
    and after the connection parses bytes it had put aside. ``expired`` is called with
    the part that missed its deadline.
    """

    def __init__(
        self,
        deadlines: RequestDeadlines,
        call_later: Callable[..., IDelayedCall],
        progress: Callable[[], Progress],
        expired: Callable[[Reading], None],
    ) -> None:
        self._deadlines = deadlines
        self._call_later = call_later
        self._seconds = clock_of(call_later)
        self._progress = progress
        self._expired = expired
        self._call: IDelayedCall | None = None
        self._reading: tuple[Reading, int] | None = None
        self._since = 0.0

    def observe(self) -> None:
        progress = self._progress()
        if progress is None:
            self._reading = None  # a pending check finds nothing to do and stops
            return
        reading, received, request = progress
        self._start(reading, request)
        if self._call is None:  # else the pending check will see the new progress
            self._schedule(reading, received)

    def stop(self) -> None:
        """The connection is gone."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _start(self, reading: Reading, request: int) -> None:
        """Start the clock of ``request``'s ``reading`` unless it is running already."""
        if (reading, request) != self._reading:
            self._reading = (reading, request)
            self._since = self._seconds()

    def _schedule(self, reading: Reading, received: int) -> None:
        delay = self._deadlines.due(reading, self._since, received) - self._seconds()
        self._call = self._call_later(max(delay, 0.0), self._check)

    def _check(self) -> None:
        self._call = None
        progress = self._progress()
        if progress is None:
            self._reading = None
            return
        reading, received, request = progress
        self._start(reading, request)
        if self._deadlines.due(reading, self._since, received) <= self._seconds():
            self._reading = None
            self._expired(reading)
        else:
            self._schedule(reading, received)
