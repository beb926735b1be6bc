"""The HTTP layer: app factory, route declarations, validation, errors, rate limits.

``build_site(router, settings, environment=...)`` is what the service tree listens with::

    router = Router()
    router.include(health_router(sources))
    router.include(projects.router)
    site = build_site(router, settings, environment="production",
                      rate_limiter=RateLimiter(redis, rate_rules(settings)))

The names below are imported on first use: Klein installs the default reactor when it
is imported, and ``installsure.http.settings`` is read by the config (and so by twistd's
option parsing) long before a reactor may be chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from installsure._lazy import lazy_attributes

if TYPE_CHECKING:
    from installsure.http.app import ApiResource, Authenticator
    from installsure.http.context import RequestContext
    from installsure.http.errors import ApiError, FieldError
    from installsure.http.factory import build_resource, build_site, rate_rules
    from installsure.http.ratelimit import RateLimiter
    from installsure.http.routing import Paged, Response, Route, Router
    from installsure.http.settings import HttpSettings, RateRule
    from installsure.http.site import ApiSite
    from installsure.http.validation import FieldValueError

_WHERE = {
    "ApiError": "errors",
    "ApiResource": "app",
    "ApiSite": "site",
    "Authenticator": "app",
    "FieldError": "errors",
    "FieldValueError": "validation",
    "HttpSettings": "settings",
    "Paged": "routing",
    "RateLimiter": "ratelimit",
    "RateRule": "settings",
    "RequestContext": "context",
    "Response": "routing",
    "Route": "routing",
    "Router": "routing",
    "build_resource": "factory",
    "build_site": "factory",
    "rate_rules": "factory",
}

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


__getattr__ = lazy_attributes(__name__, _WHERE, globals())
