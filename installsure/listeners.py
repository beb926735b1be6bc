"""HTTP/WebSocket listeners that fail loudly at start and drain gently at stop.

``StreamServerEndpointService`` logs a failed ``listen`` and carries on, leaving a
server that runs but serves nothing. A port already in use must instead stop the
process with a message that names the endpoint and exit non-zero.

On drain, listeners close first (no new connections), idle keep-alive connections are
closed, and connections with a request in progress get until the grace period ends
before they are aborted.

Each listening socket gets ``http.backlog`` as its ``listen()`` backlog (Twisted's
default, 50, makes a burst of connects wait a second for a retry), unless its endpoint
string says ``backlog=`` itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure

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


class HttpListeners(Service):
    """Listens on every configured endpoint with one Site; stops in two phases."""

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
