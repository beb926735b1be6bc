"""Process-wide Prometheus metrics.

One registry per process (prometheus_client's default, which already carries the
process and platform collectors). Metrics are created once; :func:`counter`,
:func:`gauge` and :func:`histogram` return the existing one when asked again, so
building a second app or service in the same process (tests do) never fails with
"Duplicated timeseries".
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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


class HttpStats(Collector):
    """Request counts, durations and in-flight requests, kept in plain dicts.

    Counted on every request on the reactor thread, so it avoids prometheus_client's
    per-observation locks and label lookups; the families are built when scraped.
    Method labels are limited to the standard methods (others count as ``OTHER``) and
    routes are templates, so label cardinality stays bounded.
    """

    _METHODS: ClassVar[dict[bytes, str]] = {
        m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    }

    def __init__(self, buckets: Sequence[float] = HTTP_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.requests: dict[tuple[str, str, int], int] = {}
        # per (method, route): one count per bucket, one for +Inf, then the sum
        self.durations: dict[tuple[str, str], list[float]] = {}
        self.in_flight = 0

    def method_label(self, method: bytes) -> str:
        return self._METHODS.get(method, "OTHER")

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        series = self.durations.get((method, route))
        if series is None:
            series = self.durations[(method, route)] = [0.0] * (len(self.buckets) + 2)
        series[bisect_left(self.buckets, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "installsure_http_requests",
            "HTTP requests answered, by method, route template and status.",
            labels=("method", "route", "status"),
        )
        for (method, route, status), count in list(self.requests.items()):
            requests.add_metric((method, route, str(status)), count)
        durations = HistogramMetricFamily(
            "installsure_http_request_duration_seconds",
            "Time from routing a request to finishing its response.",
            labels=("method", "route"),
        )
        bounds = [*(repr(float(b)) for b in self.buckets), "+Inf"]
        for (method, route), series in list(self.durations.items()):
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound, in_bucket in zip(bounds, series[:-1], strict=True):
                running += in_bucket
                cumulative.append((bound, running))
            durations.add_metric((method, route), cumulative, sum_value=series[-1])
        in_flight = GaugeMetricFamily(
            "installsure_http_requests_in_flight", "HTTP requests being handled right now."
        )
        in_flight.add_metric((), self.in_flight)
        yield requests
        yield durations
        yield in_flight


def _http_stats() -> HttpStats:
    existing = _created.get("installsure_http")
    if isinstance(existing, HttpStats):
        return existing
    stats = HttpStats()
    REGISTRY.register(stats)
    _created["installsure_http"] = stats
    return stats


HTTP_STATS = _http_stats()

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
