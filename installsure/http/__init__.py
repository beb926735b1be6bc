"""The HTTP layer: app factory, route declarations, validation, errors, rate limits.

``build_site(router, settings, environment=...)`` is what the service tree listens with::

    router = Router()
    router.include(health_router(sources))
    router.include(projects.router)
    site = build_site(router, settings, environment="production",
                      rate_limiter=RateLimiter(redis, rules_from(settings)))
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.web.resource import IResource

from installsure.http.app import ApiResource, Authenticator
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError, FieldError
from installsure.http.ratelimit import RateLimiter
from installsure.http.routing import Paged, Response, Route, Router
from installsure.http.settings import HttpSettings, RateRule
from installsure.http.site import ApiSite
from installsure.http.validation import FieldValueError

__all__ = [
    "ApiError",
    "ApiResource",
    "ApiSite",
    "Authenticator",
    "FieldError",
    "FieldValueError",
    "HttpSettings",
    "Paged",
    "RateLimiter",
    "RateRule",
    "RequestContext",
    "Response",
    "Route",
    "Router",
    "build_resource",
    "build_site",
    "rate_rules",
]


def rate_rules(settings: HttpSettings) -> dict[str, RateRule]:
    """The ``default`` rule and the named ones, ready for :class:`RateLimiter`."""
    return {"default": settings.default_rate, **settings.named_rates()}


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
    return ApiSite(api, mounts)
