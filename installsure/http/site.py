"""The twisted.web ``Site`` for the API: HTTP/1.1 through ApiChannel and ApiRequest.

The site writes no access log of its own: the API resource logs every request with
richer fields. ``mounts`` serve other resources (e.g. the WebSocket at ``/ws``) beside
the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.web import resource, server
from twisted.web.resource import IResource

from installsure.http.app import ApiResource
from installsure.http.channel import ApiChannel
from installsure.http.request import ApiRequest


class ApiSite(server.Site):
    """Serves an :class:`ApiResource`; ``mounts`` put other resources (e.g. ``/ws``) beside it.

    Speaks HTTP/1.1 only (no HTTP/2 negotiation), through :class:`ApiChannel`.
    """

    protocol = ApiChannel  # type: ignore[assignment]
    requestFactory = ApiRequest
    displayTracebacks = False

    def __init__(
        self, api: ApiResource, mounts: Mapping[bytes, IResource] | None = None, **kw: Any
    ) -> None:
        super().__init__(api, **kw)  # type: ignore[no-untyped-call]
        self.api = api
        self.mounts = dict(mounts or {})

    def body_limit(self, path: bytes) -> int:
        return self.api.body_limit(path)

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
