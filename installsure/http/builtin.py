"""Routes the HTTP layer serves itself: ``/openapi.json``, ``/docs`` and ``/metrics``."""

from __future__ import annotations

import gzip
import hmac
import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from installsure import metrics
from installsure._version import __version__
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError
from installsure.http.openapi import build_document
from installsure.http.routing import Response, Router

_DOCS_HTML = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>InstallSure API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

# A file rather than an inline script, so the page works under our CSP (script-src 'self').
_DOCS_INIT = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
});
"""

# Swagger UI needs its own scripts and styles (inline styles included) and data: icons.
_DOCS_CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
    b"form-action 'self'"
)

_ASSETS = {
    "swagger-ui-bundle.js": b"application/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "swagger-ui-LICENSE.txt": b"text/plain; charset=utf-8",
}


@cache
def _asset(name: str) -> tuple[bytes, bytes]:
    """The asset's bytes and their gzip form, read from the package once."""
    raw = resources.files("installsure.http").joinpath("static", name).read_bytes()
    return raw, gzip.compress(raw, compresslevel=9)


def _static(
    ctx: RequestContext, body: bytes, content_type: bytes, zipped: bytes | None
) -> Response:
    headers = [(b"Cache-Control", b"public, max-age=3600"), (b"Content-Security-Policy", _DOCS_CSP)]
    request: Any = ctx.request
    accept = request.requestHeaders.getRawHeaders(b"accept-encoding") or []
    if zipped is not None and any(b"gzip" in a for a in accept):
        headers += [(b"Content-Encoding", b"gzip"), (b"Vary", b"Accept-Encoding")]
        body = zipped
    return Response(body=body, content_type=content_type, headers=headers)


def builtin_router(
    routes_for_docs: Callable[[], Any],
    *,
    expose_docs: bool,
    metrics_token: str | None,
    rate_limited: bool,
) -> Router:
    """``routes_for_docs()`` returns every route, read when the document is first asked."""
    router = Router()
    openapi_cache: list[bytes] = []

    if expose_docs:

        def openapi(_ctx: RequestContext) -> Response:
            if not openapi_cache:
                document = build_document(
                    routes_for_docs(), version=__version__, rate_limited=rate_limited
                )
                openapi_cache.append(json.dumps(document, separators=(",", ":")).encode())
            return Response(body=openapi_cache[0], content_type=b"application/json")

        def docs(ctx: RequestContext) -> Response:
            return _static(ctx, _DOCS_HTML, b"text/html; charset=utf-8", None)

        def docs_init(ctx: RequestContext) -> Response:
            return _static(ctx, _DOCS_INIT, b"application/javascript; charset=utf-8", None)

        def make_asset(name: str, content_type: bytes) -> Callable[[RequestContext], Response]:
            def asset(ctx: RequestContext) -> Response:
                raw, zipped = _asset(name)
                return _static(ctx, raw, content_type, zipped)

            return asset

        router.add("GET", "/openapi.json", openapi, summary="This OpenAPI document",
                   tags=("meta",), rate_limit=None, hidden=True)
        router.add("GET", "/docs", docs, rate_limit=None, hidden=True)
        router.add("GET", "/docs/init.js", docs_init, rate_limit=None, hidden=True)
        for name, content_type in _ASSETS.items():
            router.add("GET", f"/docs/{name}", make_asset(name, content_type),
                       rate_limit=None, hidden=True, operation_id=f"asset_{name}")

    token = f"Bearer {metrics_token}".encode() if metrics_token else None

    def prometheus(ctx: RequestContext) -> Response:
        """Prometheus text exposition of this process's metrics."""
        if token is not None:
            request: Any = ctx.request
            given = request.requestHeaders.getRawHeaders(b"authorization") or [b""]
            if not hmac.compare_digest(given[0], token):
                raise ApiError(
                    "UNAUTHENTICATED",
                    "The metrics need 'Authorization: Bearer <http.metrics_token>'.",
                    headers=((b"WWW-Authenticate", b"Bearer"),),
                )
        body, content_type = metrics.exposition()
        return Response(body=body, content_type=content_type.encode("ascii"))

    router.add("GET", "/metrics", prometheus, summary="Prometheus metrics", tags=("health",),
               rate_limit=None, envelope=False, media_type="text/plain",
               errors=(401,) if token is not None else ())
    return router
