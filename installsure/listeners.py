"""HTTP/WebSocket listeners that fail loudly at start and drain gently at stop.

``StreamServerEndpointService`` logs a failed ``listen`` and carries on, leaving a
server that runs but serves nothing. A port already in use must instead stop the
process with a message that names the endpoint and exit non-zero.

On drain, listeners close first (no new connections), idle keep-alive connections are
closed, and connections with a request in progress get until the grace period ends
before they are aborted.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from installsure.process import fail_and_stop

log = Logger()


class ConnectionTracker:
    """Knows the site's open HTTP channels, so a drain can wait for them."""

    def __init__(self, site: Site) -> None:
        self.channels: set[HTTPChannel] = set()
        self._closed: Deferred[None] | None = None
        build = site.buildProtocol

        def buildProtocol(addr: Any) -> HTTPChannel | None:
            channel: HTTPChannel | None = build(addr)  # type: ignore[no-untyped-call]
            if channel is None:
                return None
            self.channels.add(channel)
            lost = channel.connectionLost

            def connectionLost(reason: Failure) -> None:
                self.channels.discard(channel)
                try:
                    lost(reason)  # type: ignore[no-untyped-call]
                finally:
                    if not self.channels and self._closed is not None:
                        closed, self._closed = self._closed, None
                        closed.callback(None)

            channel.connectionLost = connectionLost  # type: ignore[method-assign]
            return channel

        site.buildProtocol = buildProtocol  # type: ignore[method-assign]

    def busy(self) -> int:
        """Channels with a request in progress."""
        return sum(1 for channel in self.channels if _has_request(channel))

    def close_idle(self) -> None:
        for channel in list(self.channels):
            transport = _transport(channel)
            if not _has_request(channel) and transport is not None:
                transport.loseConnection()

    def drain(self, reactor: IReactorTime, grace: float) -> Deferred[None]:
        """Close idle channels now and the others once their request ends, or abort them
        after ``grace`` seconds."""
        if not self.channels:
            return succeed(None)
        self._closed = Deferred()
        done = self._closed
        # Channels finish their current request, then see the request queue empty and
        # close because of this check, run every 50 ms.
        poll = _Every(reactor, 0.05, self.close_idle)
        poll.start()

        def abort() -> None:
            remaining = list(self.channels)
            if remaining:
                log.warn("drain: aborting {count} connection(s) still busy after {grace}s",
                         count=len(remaining), grace=grace)
            for channel in remaining:
                transport = _transport(channel)
                if transport is not None:
                    transport.abortConnection()

        timer = reactor.callLater(grace, abort)

        def finished(result: None) -> None:
            poll.stop()
            if timer.active():
                timer.cancel()
            return result

        done.addBoth(finished)
        return done


def _inner(channel: HTTPChannel) -> Any:
    # Site builds a protocol that picks HTTP/1.1 or HTTP/2 and keeps the real one inside.
    return getattr(channel, "_channel", channel)


def _has_request(channel: HTTPChannel) -> bool:
    return bool(getattr(_inner(channel), "requests", None))


def _transport(channel: HTTPChannel) -> Any:
    return getattr(_inner(channel), "transport", None)


class _Every:
    def __init__(self, reactor: IReactorTime, interval: float, fn: Any) -> None:
        self.reactor, self.interval, self.fn = reactor, interval, fn
        self.call: Any = None

    def start(self) -> None:
        self.fn()
        self.call = self.reactor.callLater(self.interval, self.start)

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()


class HttpListeners(Service):
    """Listens on every configured endpoint with one Site; stops in two phases."""

    name = "http-listeners"

    def __init__(self, reactor: Any, endpoints: tuple[str, ...], site: Site) -> None:
        self.reactor = reactor
        self.endpoint_strings = endpoints
        self.site = site
        self.tracker = ConnectionTracker(site)
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
            endpoint = serverFromString(self.reactor, description)  # type: ignore[no-untyped-call]
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

    def close_listeners(self) -> Deferred[object]:
        """Stop accepting connections (first phase of a drain)."""
        ports, self.ports = self.ports, []
        closing = [Deferred.fromCoroutine(_stop(port)) for port in ports]
        return DeferredList(closing).addCallback(lambda _: None)

    def drain(self, grace: float) -> Deferred[object]:
        """Close listeners, then let in-flight requests finish within ``grace`` seconds."""
        closed = self.close_listeners()
        return closed.addCallback(lambda _: self.tracker.drain(self.reactor, grace))

    def stopService(self) -> Deferred[object]:
        super().stopService()  # type: ignore[no-untyped-call]
        # Normally the drain service has done this already; after a failed start it
        # has not, and closing is harmless twice.
        return self.drain(0.0)


async def _stop(port: IListeningPort) -> None:
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result
