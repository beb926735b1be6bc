"""Which route a request is for: a dict for fixed paths, Klein's URL map for the rest.

Routes without path parameters sit in a dict keyed by the raw path, so the common case
costs one lookup; the rest are matched by the werkzeug map of a Klein app
(:attr:`RouteTable.klein`) in which every route is registered, so URL rules,
converters and 405s follow Klein's semantics. A second map knows the routes with a body
limit of their own, so that the limit applies before the body arrives.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from installsure.bounded import remember
from installsure.http.errors import ApiError
from installsure.http.routing import Route, Router, method_not_allowed


def _endpoint_of(route: Route) -> Any:
    # Klein stores the endpoint; dispatch only needs to know which route matched.
    def endpoint(_request: object, **_params: object) -> Route:
        return route

    return endpoint


#: Matched paths with parameters remembered per route table.
MATCHES_REMEMBERED = 4096


class RouteTable:
    """The routes of a :class:`Router`, ready to match requests against."""

    def __init__(self, router: Router) -> None:
        self._static: dict[bytes, dict[bytes, Route]] = {}
        self._endpoints: dict[str, Route] = {}
        self.klein = Klein()
        for index, route in enumerate(router.routes):
            name = f"r{index}:{route.method}:{route.path}"
            self._endpoints[name] = route
            self.klein.route(
                route.werkzeug_path, methods=[route.method], endpoint=name, strict_slashes=False
            )(_endpoint_of(route))
            if route.is_static:
                self._static.setdefault(route.path.encode("utf-8"), {})[
                    route.method.encode("ascii")
                ] = route
        self._adapter = self.klein.url_map.bind("localhost")
        #: (method, path) -> what werkzeug matched, for paths with parameters (emptied
        #: when full): a client reading one project or file again skips the matcher.
        self._matched: dict[tuple[bytes, bytes], tuple[Route, dict[str, Any]]] = {}
        limits = Klein()
        for route in router.routes:
            if route.max_body is not None:
                limits.route(
                    route.werkzeug_path, endpoint=str(route.max_body), strict_slashes=False
                )(_endpoint_of(route))
        self._limit_adapter = limits.url_map.bind("localhost") if limits.endpoints else None
        #: Whether any route takes its body as a stream (see is_streamed).
        self.has_streamed = any(route.streamed for route in router.routes)

    def is_streamed(self, method: bytes, path: bytes) -> bool:
        """Whether the route of ``method path`` takes its body as it arrives."""
        if not self.has_streamed:
            return False
        try:
            route, _params = self.match(method, path)
        except ApiError:
            return False
        return route.streamed

    def match(self, method: bytes, path: bytes) -> tuple[Route, dict[str, Any]]:
        """The route for ``method path`` and its parameters, or ApiError 404/405."""
        by_method = self._static.get(path)
        if by_method is not None:
            route = by_method.get(method)
            if route is None and method == b"HEAD":
                route = by_method.get(b"GET")
            if route is not None:
                return route, {}
        known = self._matched.get((method, path))
        if known is not None:
            return known
        try:
            text = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("BAD_REQUEST", "The request path is not valid UTF-8.") from None
        method_text = method.decode("latin-1")
        try:
            endpoint, params = self._adapter.match(
                text, method="GET" if method_text == "HEAD" else method_text
            )
        except MethodNotAllowed as e:
            raise method_not_allowed(e.valid_methods or ()) from None
        except (NotFound, RequestRedirect):
            raise ApiError(
                "NOT_FOUND", f"There is no {method_text} {text}; see /openapi.json."
            ) from None
        return remember(self._matched, (method, path),
                        (self._endpoints[endpoint], dict(params)), MATCHES_REMEMBERED)

    def allowed_methods(self, path: bytes) -> list[str]:
        """The methods some route answers at ``path`` (empty: no route there)."""
        by_method = self._static.get(path)
        if by_method is not None:
            return [m.decode("ascii") for m in by_method]
        try:
            text = unquote_to_bytes(path).decode("utf-8")
            self._adapter.match(text, method="__probe__")
        except MethodNotAllowed as e:
            return list(e.valid_methods or ())
        except Exception:
            return []
        return []

    def body_limit(self, path: bytes, default: int) -> int:
        """The largest body a request to ``path`` may send: its route's own limit, or
        ``default``."""
        if self._limit_adapter is None:
            return default
        try:
            endpoint, _params = self._limit_adapter.match(
                unquote_to_bytes(path).decode("utf-8", "replace"), method="POST"
            )
        except (NotFound, MethodNotAllowed, RequestRedirect):
            return default
        return int(endpoint)
