"""The open HTTP connections of a site, and closing them without losing a request.

The site adds each connection it builds: the :class:`~installsure.http._wire.ApiChannel`
on the fast wire, the :class:`~installsure.http.stock.StockConnection` around a stock
channel. A connection discards itself when it goes, and when a WebSocket upgrade takes
it over (:meth:`ConnectionTracker.upgraded`): it speaks something else from then on,
and its own protocol (the realtime broker) closes it on shutdown.

Draining, phase 3 of a shutdown (:meth:`ConnectionTracker.begin_drain`):

* every response from then on carries ``Connection: close`` and its connection closes
  after it. A response already under way ends as it began, and so does one whose
  client has sent more behind it (a pipelined request); the next one then closes;
* idle connections close, once they have been quiet for :data:`QUIET_SECONDS` (at
  once for most). A client looping requests is never idle for long: closing between
  its requests would race the next one, already on its way, so it gets that one
  answered with ``Connection: close`` instead. Bytes already waiting in a socket are a
  request too: such a connection is left to read them;
* at the end of the grace (:meth:`ConnectionTracker.cut`), a request still arriving is
  answered 503 and every connection closes; any still open
  :data:`~installsure.http.refusal.LINGER_SECONDS` later is aborted.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from installsure import metrics
from installsure.http.refusal import LINGER_SECONDS, Refusal

log = Logger(namespace="installsure.http")

#: An idle connection closes once nothing has been read or written on it for this long.
#: Far more than a looping client takes to send its next request, even on a loaded
#: machine; far less than the grace.
QUIET_SECONDS = 1.0
#: How often a drain looks for connections that have become idle and quiet.
SWEEP_SECONDS = 0.05

#: The answer to a request still arriving when the grace ends.
SHUTTING_DOWN = Refusal(
    503, b"Service Unavailable", "UNAVAILABLE",
    "The server is shutting down and this request had not arrived in full when its "
    "grace period ended; send it again.",
)

OPEN = metrics.gauge(
    "installsure_http_connections_open",
    "HTTP connections open (not counting those upgraded to WebSocket).",
)
ABORTED = metrics.counter(
    "installsure_shutdown_connections_aborted",
    "HTTP connections closed by force at the end of the shutdown grace.",
)


class TrackedConnection(Protocol):
    """What the tracker needs of a connection (fast: ApiChannel; stock: StockConnection)."""

    def begin_drain(self) -> None:
        """From now on: ``Connection: close`` on every response, closed after it."""

    def is_idle(self) -> bool:
        """No request in progress, none begun, nothing read ahead: closing loses nothing."""

    def last_active(self) -> float:
        """When (on the reactor's clock) something was last read or written."""

    def bytes_waiting(self) -> bool:
        """Whether the client has sent bytes not read yet."""

    def close(self) -> None:
        """Close after what is written has gone out."""

    def cut(self, refusal: Refusal) -> None:
        """The grace is over: answer a request still arriving with ``refusal``; close."""

    def abort(self) -> None:
        """Close now, dropping whatever is still to be written."""


def socket_has_bytes(transport: Any) -> bool:
    """Whether the socket under ``transport`` holds bytes not read yet (False when that
    cannot be seen, e.g. through TLS)."""
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if not isinstance(handle, socket.socket):
        return False
    try:
        return bool(handle.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # nothing to read (EAGAIN), or the connection is broken
        return False


class ConnectionTracker:
    """A site's open HTTP connections; drains them on shutdown (see module docstring)."""

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self.connections: set[TrackedConnection] = set()
        self.draining = False
        #: Counted during a drain: idle connections closed, connections aborted at the
        #: end, connections taken over by a WebSocket upgrade.
        self.closed_idle = 0
        self.aborted = 0
        self.upgrades = 0
        self._clock = clock
        self._closing: set[TrackedConnection] = set()
        self._sweep: IDelayedCall | None = None
        self._empty: list[Deferred[None]] = []

    @property
    def clock(self) -> IReactorTime:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        assert self._clock is not None  # noqa: S101 - for mypy
        return self._clock

    def __len__(self) -> int:
        return len(self.connections)

    def add(self, connection: TrackedConnection) -> None:
        self.connections.add(connection)
        OPEN.inc()
        if self.draining:
            # Accepted from the backlog as the listeners closed: it drains too.
            connection.begin_drain()

    def discard(self, connection: TrackedConnection) -> None:
        """``connection`` is gone."""
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        self._closing.discard(connection)
        OPEN.dec()
        if not self.connections and self._empty:
            waiters, self._empty = self._empty, []
            for waiter in waiters:
                waiter.callback(None)

    def upgraded(self, connection: TrackedConnection) -> None:
        """``connection`` was taken over by another protocol (a WebSocket): not HTTP any
        more, so neither counted nor drained here."""
        self.upgrades += 1
        self.discard(connection)

    def busy(self) -> int:
        """Connections with a request in progress (or lingering after a refusal)."""
        return sum(1 for connection in self.connections if not connection.is_idle())

    def idle(self) -> int:
        return len(self.connections) - self.busy()

    def when_empty(self) -> Deferred[None]:
        """Fires once no connection is open."""
        if not self.connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._empty.append(waiter)
        return waiter

    # -- draining ---------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Phase 3: every connection closes after its next response; idle ones close."""
        if self.draining:
            return
        self.draining = True
        for connection in list(self.connections):
            connection.begin_drain()
        # Not closing idle ones in this very call: the reactor first reads what has
        # arrived meanwhile (requests that make those connections busy).
        self._schedule_sweep(0)

    def _schedule_sweep(self, delay: float) -> None:
        if self._sweep is None or not self._sweep.active():
            self._sweep = self.clock.callLater(delay, self._close_quiet)

    def _close_quiet(self) -> None:
        self._sweep = None
        now = self.clock.seconds()
        for connection in list(self.connections):
            if connection in self._closing or not connection.is_idle():
                continue
            if now - connection.last_active() < QUIET_SECONDS or connection.bytes_waiting():
                continue
            self._closing.add(connection)
            self.closed_idle += 1
            connection.close()
        if len(self._closing) < len(self.connections):
            self._schedule_sweep(SWEEP_SECONDS)

    def cut(self) -> Deferred[None]:
        """The grace is over: requests still arriving are answered 503 and every
        connection closes; fires once all are gone (aborting the last after the time
        a refusal lingers for its client to read it)."""
        self.stop()
        for connection in list(self.connections):
            connection.cut(SHUTTING_DOWN)
        if not self.connections:
            return succeed(None)
        done = self.when_empty()
        timer = self.clock.callLater(LINGER_SECONDS + 0.5, self._abort_rest)

        def finished(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        return done.addCallback(finished)

    def _abort_rest(self) -> None:
        remaining = list(self.connections)
        if remaining:
            log.warn("shutdown: aborting {count} HTTP connection(s) that did not close "
                     "after the grace", count=len(remaining))
        self.aborted += len(remaining)
        ABORTED.inc(len(remaining))
        for connection in remaining:
            connection.abort()
            # A transport that is already gone reports nothing more.
            self.discard(connection)

    def stop(self) -> None:
        """Stop looking for quiet connections."""
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
