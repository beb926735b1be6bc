"""The twisted.web ``Site`` for the API: HTTP/1.1 through ApiChannel and ApiRequest.

The site writes no access log of its own: the API resource logs every request with
richer fields. ``mounts`` serve other resources (e.g. the WebSocket at ``/ws``) beside
the API. The site hands the connection layer what it needs of the application as
:class:`~installsure.http.refusal.WireHooks`, and keeps the open connections
(:class:`~installsure.http.connections.ConnectionTracker`) for a drain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.web import resource, server
from twisted.web.resource import IResource

from installsure import logs
from installsure.http._wire import ApiChannel, ApiRequest
from installsure.http.app import ApiResource
from installsure.http.connections import ConnectionTracker
from installsure.http.context import sane_request_id
from installsure.http.deadlines import RequestDeadlines
from installsure.http.errors import error_body
from installsure.http.refusal import RefusalRecord, WireHooks
from installsure.http.settings import WIRES
from installsure.http.stock import StockChannel, StockConnection, stock_request


def wire_hooks(api: ApiResource) -> WireHooks:
    """What the connection layer needs of ``api`` to answer requests on its own."""
    settings = api.settings

    def request_id(sent: bytes | None) -> str:
        return sane_request_id(sent) or api.new_request_id()

    def log_refusal(record: RefusalRecord) -> None:
        request = record.request
        logs.log_access(
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            route=None,
            status=record.refusal.status,
            duration_ms=record.duration_ms,
            bytes_sent=record.bytes_sent,
            request_id=record.request_id,
            remote=request.remote,
        )

    return WireHooks(
        body_limit=api.body_limit,
        request_id_header=settings.request_id_header.encode("ascii"),
        request_id=request_id,
        security_headers=api.security_headers,
        error_body=error_body,
        log_refusal=log_refusal,
        application=api,
        streamed=api.routes.is_streamed if api.routes.has_streamed else None,
        deadlines=RequestDeadlines(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            body_min_rate=settings.body_min_rate,
        ),
    )


class ApiSite(server.Site):
    """Serves an :class:`ApiResource`; ``mounts`` put other resources (e.g. ``/ws``) beside it.

    Speaks HTTP/1.1 only (no HTTP/2 negotiation), on the ``wire`` chosen: ``"fast"``
    through :class:`ApiChannel` and :class:`ApiRequest`, ``"stock"`` through
    twisted.web's own ``HTTPChannel`` (see StockChannel) and ``server.Request`` (see
    :mod:`installsure.http.stock`).
    """

    protocol = ApiChannel  # type: ignore[assignment]
    requestFactory: type[server.Request] = ApiRequest
    displayTracebacks = False

    def __init__(
        self,
        api: ApiResource,
        mounts: Mapping[bytes, IResource] | None = None,
        *,
        wire: str = "fast",
        **kw: Any,
    ) -> None:
        if wire not in WIRES:
            raise ValueError(f"wire must be one of {', '.join(WIRES)}, not {wire!r}")
        super().__init__(api, **kw)  # type: ignore[no-untyped-call]
        self.api = api
        self.mounts = dict(mounts or {})
        self.wire = wire
        if wire == "stock":
            self.protocol = StockChannel  # type: ignore[assignment]
            self.requestFactory = stock_request  # type: ignore[assignment]
        self.wire_hooks = wire_hooks(api)
        self.connections = ConnectionTracker(self.reactor)

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if channel is None:
            return None
        # Discarded again when its connection goes or is upgraded, by ApiChannel or by
        # the StockConnection around a stock channel.
        if self.wire == "stock":
            connection = StockConnection(channel, self.connections, self.wire_hooks)
            self.connections.add(connection)
            return connection
        self.connections.add(channel)
        return channel

    def log(self, request: Any) -> None:
        """The API resource logs every request itself."""

    def getResourceFor(self, request: Any) -> Any:
        request.site = self
        request.sitepath = []
        if self.mounts and request.postpath:
            child = self.mounts.get(request.postpath[0])
            if child is not None:
                request.prepath.append(request.postpath.pop(0))
                return resource.getChildForRequest(child, request)  # type: ignore[no-untyped-call]
        return self.api
