"""The headers every API response gets, and what the server believes of proxies.

Security headers, HSTS (on TLS, or behind a trusted proxy that saw https), CORS for
the configured origins, a route's own headers (a route may replace a policy header,
never send two), and the client's address as the outermost trusted proxy saw it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.web.http_headers import Headers

from installsure.http._wire.head import canonical_name
from installsure.http._wire.headers import set_trusted
from installsure.http.settings import HttpSettings

_CORS_ALLOW_HEADERS = b"Authorization, Content-Type, X-Request-ID, traceparent, tracestate"
_REPLACEABLE = frozenset(
    {b"content-security-policy", b"x-frame-options", b"cross-origin-resource-policy"}
)


def _security_headers(settings: HttpSettings) -> list[tuple[bytes, list[bytes]]]:
    headers = [
        (b"X-Content-Type-Options", b"nosniff"),
        (b"X-Frame-Options", b"DENY"),
        (b"Referrer-Policy", b"no-referrer"),
        (b"Cross-Origin-Opener-Policy", b"same-origin"),
        (b"Cross-Origin-Resource-Policy", b"same-origin"),
    ]
    if settings.csp:
        headers.insert(0, (b"Content-Security-Policy", settings.csp.encode("ascii")))
    return [(name, [value]) for name, value in headers]


def add_header(out: Headers, name: bytes, value: bytes) -> None:
    """Add a value to ``name`` (never in place: some value lists are shared constants)."""
    existing = out.getRawHeaders(name)
    out.setRawHeaders(name, [*existing, value] if existing else [value])


def forwarded_entry(forwarded: list[bytes], hops: int) -> str | None:
    """What the outermost of ``hops`` proxies of ours put in an ``X-Forwarded-*`` list.

    Each of our proxies appends what it saw (the client's address, the scheme), so the
    client-facing one's entry is ``hops`` from the right; entries further left came
    from the client and could be forged. With fewer entries than hops (a proxy that
    replaces rather than appends), the leftmost is taken. Several header lines count
    as one list, in order.
    """
    entries = [entry.strip() for line in forwarded for entry in line.split(b",")]
    entries = [entry for entry in entries if entry]
    if not entries:
        return None
    return entries[-hops if hops <= len(entries) else 0].decode("latin-1")


class HeaderPolicy:
    """What ``settings`` say every response carries and whom to believe about clients."""

    def __init__(self, settings: HttpSettings) -> None:
        self._request_id_header = settings.request_id_header.encode("ascii")
        self._trust_proxy = settings.trust_proxy
        self._proxy_hops = settings.proxy_hops
        self._cors_origins = frozenset(o.encode("ascii") for o in settings.cors_origins)
        self._cors_credentials = settings.cors_allow_credentials
        self.security_headers = _security_headers(settings)
        self._security_raw = [
            (canonical_name(name), values) for name, values in self.security_headers
        ]
        self._hsts = (
            f"max-age={settings.hsts_max_age}; includeSubDomains".encode("ascii")
            if settings.hsts_max_age
            else None
        )

    def remote(self, request: Any) -> str:
        """The client's address: the trusted proxies' word for it, or the peer's."""
        if self._trust_proxy:
            forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for")
            if forwarded:
                client = forwarded_entry(forwarded, self._proxy_hops)
                if client is not None:
                    return client
        # The peer of a connection never changes: work its text out once per channel.
        channel = request.channel
        remote: str | None = getattr(channel, "_installsure_remote", None)
        if remote is None:
            address = request.getClientAddress()
            remote = str(getattr(address, "host", None) or "-")
            if channel is not None:
                channel._installsure_remote = remote
        return remote

    def apply(
        self,
        request: Any,
        route_headers: Iterable[tuple[bytes, bytes]],
        extra_headers: Iterable[tuple[bytes, bytes]] | None,
    ) -> None:
        """Put the policy's headers, then the route's and the middleware's, on
        ``request``'s response (and take twisted.web's ``Server`` off it)."""
        out = request.responseHeaders
        # Our own names and values (constants, or checked at start) skip Headers' checks
        # (see installsure.http._wire.headers); other headers go through its public API.
        set_trusted(out, self._security_raw, remove=b"Server")
        if self._hsts is not None and self._over_https(request):
            out.setRawHeaders(b"Strict-Transport-Security", [self._hsts])
        if self._cors_origins:
            self._cors(request, out)
        for name, value in route_headers:
            if name.lower() in _REPLACEABLE:
                # A route may set its own policy (e.g. /docs); never send two.
                out.setRawHeaders(name, [value])
            else:
                add_header(out, name, value)
        if extra_headers:
            for name, value in extra_headers:
                add_header(out, name, value)

    def preflight(self, request: Any, methods: bytes) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an OPTIONS answer allowing ``methods`` (none unless an
        allowed origin asks)."""
        origin = request.requestHeaders.getRawHeaders(b"origin")
        wanted = request.requestHeaders.getRawHeaders(b"access-control-request-method")
        if not (origin and wanted and origin[0] in self._cors_origins):
            return []
        return [
            (b"Access-Control-Allow-Methods", methods),
            (b"Access-Control-Allow-Headers", _CORS_ALLOW_HEADERS),
            (b"Access-Control-Max-Age", b"600"),
        ]

    def _over_https(self, request: Any) -> bool:
        # request.isSecure(), remembered per connection (it asks zope.interface).
        channel = request.channel
        secure: bool | None = getattr(channel, "_installsure_secure", None)
        if secure is None:
            secure = bool(request.isSecure())
            if channel is not None:
                channel._installsure_secure = secure
        if secure:
            return True
        if not self._trust_proxy:
            return False
        proto = request.requestHeaders.getRawHeaders(b"x-forwarded-proto", [])
        return (forwarded_entry(proto, self._proxy_hops) or "").lower() == "https"

    def _cors(self, request: Any, out: Headers) -> None:
        add_header(out, b"Vary", b"Origin")
        origin = request.requestHeaders.getRawHeaders(b"origin")
        if origin and origin[0] in self._cors_origins:
            out.setRawHeaders(b"Access-Control-Allow-Origin", [origin[0]])
            if self._cors_credentials:
                out.setRawHeaders(b"Access-Control-Allow-Credentials", [b"true"])
            out.setRawHeaders(
                b"Access-Control-Expose-Headers",
                [
                    self._request_id_header + b", X-Response-Time, RateLimit-Limit, "
                    b"RateLimit-Remaining, RateLimit-Reset, Retry-After"
                ],
            )
