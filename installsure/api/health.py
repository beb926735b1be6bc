"""Health, readiness and info endpoints (API.md "Health and operations").

The service tree (tap.py) fills :class:`HealthSources` with real checks; every check is
bounded by a timeout, so ``/readyz`` answers even when Redis or the database hangs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from attrs import field, frozen
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure import metrics
from installsure._version import __version__
from installsure.http.context import RequestContext
from installsure.http.routing import Response, Router

log = Logger(namespace="installsure.health")

_LIVE = Response(body=b'{"status":"alive"}', content_type=b"application/json")


@frozen
class CheckResult:
    """The outcome of one check; ``details`` are merged into its JSON (camelCase keys)."""

    ok: bool
    latency_ms: float | None = None
    message: str | None = None
    details: Mapping[str, Any] = field(factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "up" if self.ok else "down"}
        if self.latency_ms is not None:
            out["latencyMs"] = round(self.latency_ms, 3)
        if self.message:
            out["message"] = self.message
        out.update(self.details)
        return out


Check = Callable[[], "defer.Deferred[CheckResult]"]


def ping_check(ping: Callable[[], defer.Deferred[float]]) -> Check:
    """A check from a ``ping()`` that returns its latency in ms (``RedisCommands.ping``)."""

    def check() -> defer.Deferred[CheckResult]:
        return defer.maybeDeferred(ping).addCallback(
            lambda ms: CheckResult(ok=True, latency_ms=float(ms))
        )

    return check


def timed_check(
    call: Callable[[], defer.Deferred[Any]], clock: Callable[[], float] = time.perf_counter
) -> Check:
    """A check that times ``call()`` (e.g. a database ``SELECT 1``); an error means down."""

    def check() -> defer.Deferred[CheckResult]:
        started = clock()
        return defer.maybeDeferred(call).addCallback(
            lambda _: CheckResult(ok=True, latency_ms=(clock() - started) * 1000)
        )

    return check


def _never_draining() -> bool:
    return False


@frozen
class HealthSources:
    """What the health endpoints report; tap.py builds it from the running services."""

    #: name -> check, e.g. "redis" (PING latency), "database" (SELECT 1), "embeddedRedis".
    checks: Mapping[str, Check] = field(factory=dict)
    #: Checks whose failure makes ``/readyz`` answer 503; the others only "degrade".
    required: frozenset[str] = frozenset({"redis", "database"})
    #: Seconds each check may take before it counts as failed.
    timeout: float = 2.0
    is_draining: Callable[[], bool] = _never_draining
    name: str = "installsure"
    version: str = __version__
    environment: str = "development"
    build: Mapping[str, str] = field(factory=dict)
    features: Mapping[str, bool] = field(factory=dict)
    started_at: float = field(factory=time.time)


_LATENCY_GAUGES = {"redis": metrics.REDIS_LATENCY, "database": metrics.DATABASE_LATENCY}


def run_checks(
    sources: HealthSources, reactor: IReactorTime
) -> defer.Deferred[dict[str, CheckResult]]:
    """Run every check at once, each bounded by ``sources.timeout``."""
    names = list(sources.checks)

    def one(name: str) -> defer.Deferred[CheckResult]:
        d: defer.Deferred[CheckResult] = defer.maybeDeferred(sources.checks[name])
        d.addTimeout(sources.timeout, reactor)

        def failed(failure: Any) -> CheckResult:
            if failure.check(defer.TimeoutError, defer.CancelledError):
                message = f"no answer within {sources.timeout:g} s"
            else:
                message = failure.getErrorMessage() or failure.type.__name__
            return CheckResult(ok=False, message=message)

        def record(result: CheckResult) -> CheckResult:
            metrics.HEALTH_CHECK_UP.labels(name).set(1 if result.ok else 0)
            gauge = _LATENCY_GAUGES.get(name)
            if gauge is not None and result.ok and result.latency_ms is not None:
                gauge.set(result.latency_ms / 1000)
            return result

        d.addErrback(failed)
        d.addCallback(record)
        return d

    gathered = defer.gatherResults([one(n) for n in names])
    return gathered.addCallback(lambda results: dict(zip(names, results, strict=True)))


def _memory() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {"maxRssBytes": usage.ru_maxrss * 1024}
    try:
        with open("/proc/self/statm", "rb") as f:  # noqa: PTH123 - tiny procfs read
            pages = int(f.read().split()[1])
        out["rssBytes"] = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return out


def _cpu() -> dict[str, Any]:
    times = os.times()
    out: dict[str, Any] = {
        "userSeconds": round(times.user, 3),
        "systemSeconds": round(times.system, 3),
        "count": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        out["loadAverage"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def health_router(sources: HealthSources, reactor: IReactorTime | None = None) -> Router:
    """The health routes, served without rate limits (probes must always get through)."""
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    assert reactor is not None  # noqa: S101 - for mypy
    clock: IReactorTime = reactor
    router = Router()

    def livez(_ctx: RequestContext) -> Response:
        """200 while the process runs."""
        return _LIVE

    async def readyz(_ctx: RequestContext) -> Response:
        """503 while draining or when a required check fails."""
        results = await run_checks(sources, clock)
        draining = sources.is_draining()
        failing = sorted(n for n, r in results.items() if not r.ok and n in sources.required)
        ready = not draining and not failing
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "checks": {n: r.as_json() for n, r in results.items()},
        }
        if draining:
            body["draining"] = True
        if failing:
            body["failing"] = failing
        return Response(body=body, status=200 if ready else 503, envelope=False)

    async def health(_ctx: RequestContext) -> Response:
        """Everything an operator wants at a glance."""
        return Response(body=await _health_body(detailed=False), envelope=False)

    async def health_detailed(_ctx: RequestContext) -> Response:
        return Response(body=await _health_body(detailed=True), envelope=False)

    async def _health_body(*, detailed: bool) -> dict[str, Any]:
        results = await run_checks(sources, clock)
        all_ok = all(r.ok for r in results.values())
        required_ok = all(r.ok for n, r in results.items() if n in sources.required)
        body: dict[str, Any] = {
            "ok": required_ok and not sources.is_draining(),
            "status": "healthy" if all_ok and not sources.is_draining() else "degraded",
            "version": sources.version,
            "environment": sources.environment,
            "uptime": round(time.time() - sources.started_at, 3),
            "timestamp": _now(),
            "checks": {n: r.as_json() for n, r in results.items()},
            "memory": _memory(),
            "cpu": _cpu(),
        }
        if detailed:
            body["process"] = {
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "implementation": platform.python_implementation(),
                "platform": platform.platform(),
                "draining": sources.is_draining(),
            }
            body["build"] = dict(sources.build)
            body["features"] = dict(sources.features)
        return body

    # Fixed for the life of the process: encoded once.
    info_response = Response(
        body=json.dumps({
            "name": sources.name,
            "version": sources.version,
            "environment": sources.environment,
            "build": dict(sources.build),
            "features": dict(sources.features),
        }, separators=(",", ":")).encode(),
        content_type=b"application/json",
        envelope=False,
    )

    def info(_ctx: RequestContext) -> Response:
        return info_response

    common: dict[str, Any] = {"tags": ("health",), "rate_limit": None, "envelope": False}
    router.add("GET", "/livez", livez, summary="Liveness", response=dict[str, str], **common)
    router.add("GET", "/live", livez, summary="Liveness (old path)", response=dict[str, str],
               operation_id="live", **common)
    # 503 is the same report, not the error envelope: probes read its checks.
    not_ready = {503: dict[str, Any]}
    router.add("GET", "/readyz", readyz, summary="Readiness", response=dict[str, Any],
               responses=not_ready, **common)
    router.add("GET", "/ready", readyz, summary="Readiness (old path)", response=dict[str, Any],
               responses=not_ready, operation_id="ready", **common)
    router.add("GET", "/api/health", health, summary="Health report", response=dict[str, Any],
               **common)
    router.add("GET", "/health", health, summary="Health report (old path)",
               response=dict[str, Any], operation_id="health_old", **common)
    router.add("GET", "/health/detailed", health_detailed, summary="Detailed health report",
               response=dict[str, Any], **common)
    router.add("GET", "/info", info, summary="Name, version, environment, build, features",
               response=dict[str, Any], **common)
    return router
