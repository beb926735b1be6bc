"""The open HTTP connections of a site, so that a drain can wait for them.

The site adds each HTTP channel it builds; the channel (or, in the stock wire, the
guard around it) discards itself when its connection is lost. Only public Twisted API:
a channel's ``requests`` and ``transport``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

#: How often a drain looks for connections whose request has ended.
_POLL_SECONDS = 0.05


class ConnectionTracker:
    """Knows a site's open HTTP channels; :meth:`drain` closes them gently."""

    def __init__(self) -> None:
        self.channels: set[Any] = set()
        self._closed: Deferred[None] | None = None

    def add(self, channel: Any) -> None:
        self.channels.add(channel)

    def discard(self, channel: Any) -> None:
        """``channel``'s connection is gone."""
        self.channels.discard(channel)
        if not self.channels and self._closed is not None:
            closed, self._closed = self._closed, None
            closed.callback(None)

    def busy(self) -> int:
        """Channels with a request in progress."""
        return sum(1 for channel in self.channels if channel.requests)

    def close_idle(self) -> None:
        for channel in list(self.channels):
            if not channel.requests and channel.transport is not None:
                channel.transport.loseConnection()

    def drain(self, reactor: IReactorTime, grace: float) -> Deferred[None]:
        """Close idle channels now and the others once their request ends, or abort them
        after ``grace`` seconds."""
        if not self.channels:
            return succeed(None)
        self._closed = Deferred()
        done = self._closed
        # Channels finish their current request, then see the request queue empty and
        # close because of this check.
        poll = _Every(reactor, _POLL_SECONDS, self.close_idle)
        poll.start()

        def abort() -> None:
            remaining = list(self.channels)
            if remaining:
                log.warn("drain: aborting {count} connection(s) still busy after {grace}s",
                         count=len(remaining), grace=grace)
            for channel in remaining:
                if channel.transport is not None:
                    channel.transport.abortConnection()

        timer = reactor.callLater(grace, abort)

        def finished(result: None) -> None:
            poll.stop()
            if timer.active():
                timer.cancel()
            return result

        done.addBoth(finished)
        return done


class _Every:
    def __init__(self, reactor: IReactorTime, interval: float, fn: Callable[[], None]) -> None:
        self.reactor, self.interval, self.fn = reactor, interval, fn
        self.call: IDelayedCall | None = None

    def start(self) -> None:
        self.fn()
        self.call = self.reactor.callLater(self.interval, self.start)

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
