"""Prometheus metrics of the realtime layer, kept as plain integers.

An event delivered to a thousand subscribers must not take a thousand locks, so the
broker adds to attributes of one :class:`RealtimeStats` and the families are built when
``/metrics`` is scraped. One process-wide instance, :data:`REALTIME_STATS`; several
brokers in one process (tests) add to it together, and each keeps its own gauges.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from installsure.metrics import _created


class RealtimeStats(Collector):
    def __init__(self) -> None:
        self.published = 0
        self.delivered = 0
        #: reason -> count: ``slow_consumer``, ``backplane_down``, ``closed``
        self.dropped: dict[str, int] = {}
        self.slow_consumer_disconnects = 0
        self.bytes_out = 0
        #: reason -> count
        self.auth_failures: dict[str, int] = {}
        self.protocol_violations = 0
        self._brokers: weakref.WeakSet[Any] = weakref.WeakSet()

    def watch(self, broker: Any) -> None:
        """Report ``broker``'s sessions and subscriptions while it lives."""
        self._brokers.add(broker)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def auth_failed(self, reason: str) -> None:
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    def collect(self) -> Iterator[Metric]:
        sessions = GaugeMetricFamily(
            "installsure_realtime_sessions", "Open WAMP and plain-protocol sessions."
        )
        sessions.add_metric((), sum(len(b.sessions) for b in list(self._brokers)))
        subscriptions = GaugeMetricFamily(
            "installsure_realtime_subscriptions", "Subscriptions (URI + match) with subscribers."
        )
        subscriptions.add_metric((), sum(len(b.subscriptions) for b in list(self._brokers)))
        yield sessions
        yield subscriptions
        yield _counter("installsure_realtime_events_published", "Events published.",
                       self.published)
        yield _counter("installsure_realtime_events_delivered",
                       "Events delivered to subscribers (one per subscriber).", self.delivered)
        dropped = CounterMetricFamily(
            "installsure_realtime_events_dropped",
            "Events not delivered, by reason (slow_consumer, backplane_down, closed).",
            labels=("reason",),
        )
        for reason, count in list(self.dropped.items()):
            dropped.add_metric((reason,), count)
        yield dropped
        yield _counter("installsure_realtime_slow_consumer_disconnects",
                       "Sessions disconnected because they did not read fast enough.",
                       self.slow_consumer_disconnects)
        yield _counter("installsure_realtime_bytes_out",
                       "Bytes of WebSocket messages sent to clients.", self.bytes_out)
        failures = CounterMetricFamily(
            "installsure_realtime_auth_failures",
            "Refused session authentications, by reason.", labels=("reason",),
        )
        for reason, count in list(self.auth_failures.items()):
            failures.add_metric((reason,), count)
        yield failures
        yield _counter("installsure_realtime_protocol_violations",
                       "Sessions aborted for breaking the protocol.", self.protocol_violations)


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric((), value)
    return family


def _realtime_stats() -> RealtimeStats:
    existing = _created.get("installsure_realtime")
    if isinstance(existing, RealtimeStats):
        return existing
    stats = RealtimeStats()
    REGISTRY.register(stats)
    _created["installsure_realtime"] = stats
    return stats


REALTIME_STATS = _realtime_stats()
