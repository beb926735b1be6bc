"""HTTP/WebSocket listeners that fail loudly at start and drain gently at stop.

``StreamServerEndpointService`` logs a failed ``listen`` and carries on, leaving a
server that runs but serves nothing. A port already in use must instead stop the
process with a message that names the endpoint and exit non-zero.

They are the HTTP side of a shutdown (:class:`HttpListeners` is a
:class:`~installsure.drain.DrainParticipant`): in phase 2 the listeners close, after
accepting the connections the kernel has already completed (a closed listener resets
them, requests and all); in phase 3 the site's connections drain
(:meth:`~installsure.http.connections.ConnectionTracker.begin_drain`); in phase 4
requests finish until the deadline, when those still running are answered 503 and the
connections closed.

Each listening socket gets ``http.backlog`` as its ``listen()`` backlog (Twisted's
default, 50, makes a burst of connects wait a second for a retry), unless its endpoint
string says ``backlog=`` itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.internet.main import CONNECTION_DONE
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.drain import DrainParticipant
from installsure.process import fail_and_stop

if TYPE_CHECKING:
    from installsure.http.site import ApiSite

log = Logger()

#: Endpoint types whose listening socket takes a ``backlog`` argument.
_TAKES_BACKLOG = frozenset({"tcp", "tcp6", "ssl", "unix"})
#: The ``:`` between an endpoint string's parts (``\:`` is a colon inside one).
_SEPARATOR = re.compile(r"(?<!\\):")


def with_backlog(description: str, backlog: int) -> str:
    """``description`` with ``backlog=`` added, for endpoint types that take one and
    when it does not say ``backlog=`` already."""
    parts = _SEPARATOR.split(description)
    if parts[0] not in _TAKES_BACKLOG or any(p.startswith("backlog=") for p in parts[1:]):
        return description
    return f"{description}:backlog={backlog}"


class HttpListeners(Service, DrainParticipant):
    """Listens on every configured endpoint with one Site; drains them on shutdown."""

    name = "http-listeners"

    def __init__(
        self,
        reactor: Any,
        endpoints: tuple[str, ...],
        site: ApiSite,
        backlog: int | None = None,
    ) -> None:
        self.reactor = reactor
        self.endpoint_strings = endpoints
        self.site = site
        #: ``listen()``'s backlog: the site's ``http.backlog`` unless given.
        self.backlog = site.api.settings.backlog if backlog is None else backlog
        self.tracker = site.connections
        self.ports: list[IListeningPort] = []
        self._listen_started = False

    def privilegedStartService(self) -> None:
        # Listening here, before twistd drops privileges, allows ports below 1024.
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        # `twist` never calls privilegedStartService.
        self._listen()

    def _listen(self) -> None:
        if self._listen_started:
            return
        self._listen_started = True
        for description in self.endpoint_strings:
            endpoint = serverFromString(  # type: ignore[no-untyped-call]
                self.reactor, with_backlog(description, self.backlog)
            )
            listening = endpoint.listen(self.site)
            listening.addCallbacks(
                self._listening, self._cannot_listen,
                callbackArgs=(description,), errbackArgs=(description,),
            )

    def _listening(self, port: IListeningPort, description: str) -> None:
        self.ports.append(port)
        address = port.getHost()
        log.info("listening on {endpoint} ({address})", endpoint=description,
                 address=str(address))

    def _cannot_listen(self, failure: Failure, description: str) -> None:
        reason = failure.value
        if failure.check(CannotListenError):  # type: ignore[no-untyped-call]
            reason = getattr(reason, "socketError", None) or reason
        core: IReactorCore = self.reactor
        fail_and_stop(
            core,
            "cannot listen on {endpoint}: {reason}. Is another server using it? Choose "
            "another with --listen or http.listen.",
            endpoint=description, reason=str(reason),
        )

    def close_listeners(self) -> Deferred[None]:
        """Stop accepting connections; fires once every listening socket is closed."""
        ports, self.ports = self.ports, []
        closing = [Deferred.fromCoroutine(_stop(port)) for port in ports]
        return DeferredList(closing).addCallback(lambda _: None)

    # -- as a drain participant (installsure.drain) ------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "connections": len(self.tracker),
            "idle": self.tracker.idle(),
            "requests": self.site.api.in_flight,
        }

    def stop_accepting(self) -> Deferred[None]:
        return self.close_listeners()

    def drain_connections(self) -> None:
        self.tracker.begin_drain()

    def finish(self, deadline: float) -> Deferred[Mapping[str, int]]:
        """Wait for requests and connections to end until ``deadline``; then answer
        those still running 503 and close what is left."""
        return Deferred.fromCoroutine(self._finish(deadline))

    async def _finish(self, deadline: float) -> Mapping[str, int]:
        clock: IReactorTime = self.reactor
        # Connections go once their last response is out; a request still running
        # keeps its connection open, so waiting for the connections waits for both.
        over: Deferred[None] = Deferred()

        def end(_: object = None) -> None:
            if not over.called:
                over.callback(None)

        waits: list[Deferred[Any]] = [self.site.api.when_idle(), self.tracker.when_empty()]
        gatherResults(waits).addBoth(end)
        timer = clock.callLater(max(0.0, deadline - clock.seconds()), end)
        await over
        if timer.active():
            timer.cancel()
        cut = 0
        aborted_before = self.tracker.aborted
        if self.site.api.in_flight or len(self.tracker):
            cut = self.site.api.cut_running()
            log.warn(
                "shutdown: the grace is over; {cut} request(s) answered 503, closing "
                "{count} HTTP connection(s)", cut=cut, count=len(self.tracker),
            )
            await self.tracker.cut()
        self.tracker.stop()
        return {"requests_cut": cut,
                "connections_aborted": self.tracker.aborted - aborted_before}

    def drain(self, grace: float) -> Deferred[Mapping[str, int]]:
        """All of the above at once, with ``grace`` seconds to finish (a stop that did
        not come through the drain service: a failed start, a test)."""
        clock: IReactorTime = self.reactor
        deadline = clock.seconds() + grace
        closed = self.stop_accepting()
        self.drain_connections()
        return closed.addCallback(lambda _: self.finish(deadline))

    def stopService(self) -> Deferred[object]:
        super().stopService()  # type: ignore[no-untyped-call]
        # Normally the drain service has done all this already; after a failed start it
        # has not, and doing it twice is harmless.
        return self.drain(0.0).addCallback(lambda _: None)


#: Rounds of accepting the backlog before a TCP listener closes; each accepts what the
#: port takes at once (100 or more), so this bounds the time a flood can keep it open.
_ACCEPT_ROUNDS = 50


async def _stop(port: IListeningPort) -> None:
    if isinstance(port, tcp.Port) and port.connected and not port.disconnecting:
        _accept_backlog_and_close(port)
        return
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result


def _accept_backlog_and_close(port: tcp.Port) -> None:
    """Accept the connections the kernel has completed, then close the socket at once.

    A listening socket closed with connections in its backlog resets them, requests
    and all; and ``stopListening`` closes it a reactor turn later, a turn in which new
    handshakes complete only to be reset. So this takes the steps of
    ``stopListening`` (which are public methods of ``tcp.Port``) in one go: stop
    reading, accept until the backlog is empty, close.
    """
    port.disconnecting = True
    port.stopReading()  # type: ignore[no-untyped-call]
    try:
        for _ in range(_ACCEPT_ROUNDS):
            accepted_before = port.sessionno
            port.doRead()  # type: ignore[no-untyped-call]
            if port.sessionno == accepted_before:
                break
    finally:
        port.connectionLost(Failure(CONNECTION_DONE))  # type: ignore[no-untyped-call]
