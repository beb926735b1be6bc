"""``build_resource`` and ``build_site``: the API's routes plus the built-in ones."""

from __future__ import annotations

from collections.abc import Mapping

from twisted.web.resource import IResource

from installsure.http.app import ApiResource, Authenticator
from installsure.http.ratelimit import RateLimiter
from installsure.http.routing import Router
from installsure.http.settings import FAILED_AUTH_RULE, HttpSettings, RateRule
from installsure.http.site import ApiSite


def rate_rules(settings: HttpSettings) -> dict[str, RateRule]:
    """The ``default`` rule, the failed-authentication one and the named ones, ready
    for :class:`RateLimiter`."""
    return {
        "default": settings.default_rate,
        FAILED_AUTH_RULE: settings.failed_auth_rate,
        **settings.named_rates(),
    }


def build_resource(
    router: Router,
    settings: HttpSettings,
    *,
    environment: str = "development",
    rate_limiter: RateLimiter | None = None,
    authenticate: Authenticator | None = None,
) -> ApiResource:
    """The API as one resource: ``router``'s routes plus openapi.json, docs and metrics."""
    from installsure.http.builtin import builtin_router

    everything = Router(router.routes)
    api_routes = list(router.routes)
    everything.include(
        builtin_router(
            lambda: api_routes + [r for r in everything.routes if r.path == "/metrics"],
            expose_docs=settings.expose_docs,
            metrics_token=settings.metrics_token,
            rate_limited=rate_limiter is not None and settings.rate_limit_enabled,
        )
    )
    return ApiResource(
        everything,
        settings,
        environment=environment,
        rate_limiter=rate_limiter,
        authenticate=authenticate,
    )


def build_site(
    router: Router,
    settings: HttpSettings,
    *,
    environment: str = "development",
    rate_limiter: RateLimiter | None = None,
    authenticate: Authenticator | None = None,
    mounts: Mapping[bytes, IResource] | None = None,
) -> ApiSite:
    """A ``Site`` serving :func:`build_resource`; ``mounts`` add e.g. ``{b"ws": ws_resource}``."""
    api = build_resource(
        router,
        settings,
        environment=environment,
        rate_limiter=rate_limiter,
        authenticate=authenticate,
    )
    return ApiSite(api, mounts, wire=settings.wire, timeout=settings.idle_timeout)
