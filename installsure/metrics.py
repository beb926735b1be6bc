"""Process-wide Prometheus metrics.

One registry per process (prometheus_client's default, which already carries the
process and platform collectors). Metrics are created once; :func:`counter`,
:func:`gauge` and :func:`histogram` return the existing one when asked again, so
building a second app or service in the same process (tests do) never fails with
"Duplicated timeseries".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

M = TypeVar("M", Counter, Gauge, Histogram)

_created: dict[str, Any] = {}

#: Request durations: fine below 100 ms, where an API should live.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _get(kind: type[M], name: str, documentation: str, labels: Sequence[str], **kw: Any) -> M:
    existing = _created.get(name)
    if existing is not None:
        if not isinstance(existing, kind):
            raise ValueError(f"metric {name} already exists as a {type(existing).__name__}")
        return existing
    metric = kind(name, documentation, labelnames=tuple(labels), registry=REGISTRY, **kw)
    _created[name] = metric
    return metric


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    return _get(Counter, name, documentation, labels)


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    return _get(Gauge, name, documentation, labels)


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = HTTP_BUCKETS,
) -> Histogram:
    return _get(Histogram, name, documentation, labels, buckets=tuple(buckets))


HTTP_REQUESTS = counter(
    "installsure_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ("method", "route", "status"),
)
HTTP_DURATION = histogram(
    "installsure_http_request_duration_seconds",
    "Time from routing a request to finishing its response.",
    ("method", "route"),
)
HTTP_IN_FLIGHT = gauge(
    "installsure_http_requests_in_flight", "HTTP requests being handled right now."
)
REDIS_LATENCY = gauge(
    "installsure_redis_ping_latency_seconds", "Round trip of the last Redis PING (health check)."
)
DATABASE_LATENCY = gauge(
    "installsure_database_ping_latency_seconds", "Duration of the last database SELECT 1."
)
HEALTH_CHECK_UP = gauge(
    "installsure_health_check_up", "1 when the named health check passed last time.", ("check",)
)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
