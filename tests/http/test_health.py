"""Health endpoints: liveness, readiness with bounded checks, reports, info."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from installsure.api.health import CheckResult, HealthSources, health_router
from installsure.http import HttpSettings
from tests.http.helpers import fetch, header, json_of, stub


def ok(latency: float) -> Any:
    return lambda: defer.succeed(CheckResult(ok=True, latency_ms=latency))


def down(message: str) -> Any:
    def check() -> defer.Deferred[CheckResult]:
        return defer.fail(ConnectionRefusedError(message))

    return check


def client_for(sources: HealthSources, clock: Any = None) -> Any:
    return stub(health_router(sources, clock or Clock()), HttpSettings())[0]


def test_livez_is_alive_with_full_middleware() -> None:
    """/livez and /live answer {"status": "alive"} with the usual headers."""
    client = client_for(HealthSources())
    for path in ["/livez", "/live"]:
        response = fetch(client, "GET", path)
        assert response.code == 200
        assert json_of(client, response) == {"status": "alive"}
        assert header(response, "X-Request-ID")
        assert header(response, "X-Content-Type-Options") == "nosniff"


def test_readyz_ready_when_checks_pass() -> None:
    """All checks up: 200 ready with each check's latency."""
    sources = HealthSources(checks={"redis": ok(0.5), "database": ok(1.25)})
    client = client_for(sources)
    for path in ["/readyz", "/ready"]:
        response = fetch(client, "GET", path)
        assert response.code == 200
        assert json_of(client, response) == {
            "status": "ready",
            "checks": {
                "redis": {"status": "up", "latencyMs": 0.5},
                "database": {"status": "up", "latencyMs": 1.25},
            },
        }


def test_readyz_503_when_a_required_check_fails_but_not_an_optional_one() -> None:
    """A failing required check makes /readyz 503; an optional one only degrades health."""
    sources = HealthSources(
        checks={"redis": down("refused"), "database": ok(1), "storage": down("full")}
    )
    client = client_for(sources)
    response = fetch(client, "GET", "/readyz")
    body = json_of(client, response)
    assert response.code == 503
    assert body["status"] == "not ready"
    assert body["failing"] == ["redis"]
    assert body["checks"]["redis"] == {"status": "down", "message": "refused"}
    optional_only = client_for(
        HealthSources(checks={"redis": ok(1), "storage": down("full")})
    )
    assert fetch(optional_only, "GET", "/readyz").code == 200
    report = json_of(optional_only, fetch(optional_only, "GET", "/api/health"))
    assert report["status"] == "degraded"
    assert report["ok"] is True


def test_readyz_503_while_draining() -> None:
    """While the process drains, /readyz answers 503 even with healthy checks."""
    draining = [False]
    sources = HealthSources(checks={"redis": ok(1)}, is_draining=lambda: draining[0])
    client = client_for(sources)
    assert fetch(client, "GET", "/readyz").code == 200
    draining[0] = True
    response = fetch(client, "GET", "/readyz")
    assert response.code == 503
    assert json_of(client, response)["draining"] is True


@pytest_twisted.ensureDeferred
async def test_hanging_check_times_out_so_readyz_never_hangs() -> None:
    """A check that never answers counts as failed after the timeout."""
    import treq
    from twisted.web.server import Site

    never: defer.Deferred[CheckResult] = defer.Deferred()
    sources = HealthSources(checks={"database": lambda: never, "redis": ok(1)}, timeout=0.2)
    from installsure.http import build_resource

    resource = build_resource(health_router(sources, reactor), HttpSettings())
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        response = await treq.get(f"http://127.0.0.1:{port.getHost().port}/readyz",
                                  persistent=False, timeout=5)
        body = await response.json()
    finally:
        await port.stopListening()
    assert response.code == 503
    assert body["checks"]["database"] == {"status": "down", "message": "no answer within 0.2 s"}
    assert body["checks"]["redis"]["status"] == "up"


def test_health_report_has_the_documented_fields() -> None:
    """/api/health, /health and /health/detailed report status, version, uptime, checks,
    memory and cpu; the detailed one adds process, build and features."""
    sources = HealthSources(
        checks={"redis": ok(0.7), "database": ok(2)}, version="9.9.9", environment="test",
        build={"commit": "abc"}, features={"realtime": True},
    )
    client = client_for(sources)
    for path in ["/api/health", "/health"]:
        body = json_of(client, fetch(client, "GET", path))
        assert body["ok"] is True
        assert body["status"] == "healthy"
        assert body["version"] == "9.9.9"
        assert body["environment"] == "test"
        assert body["uptime"] >= 0
        assert body["timestamp"].endswith("Z")
        assert body["checks"]["redis"]["latencyMs"] == 0.7
        assert body["memory"]["maxRssBytes"] > 0
        assert "userSeconds" in body["cpu"]
    detailed = json_of(client, fetch(client, "GET", "/health/detailed"))
    assert detailed["process"]["pid"] > 0
    assert detailed["build"] == {"commit": "abc"}
    assert detailed["features"] == {"realtime": True}


def test_info_lists_name_version_environment_build_features() -> None:
    """/info answers name, version, environment, build and features."""
    client = client_for(HealthSources(environment="production", features={"email": False}))
    body = json_of(client, fetch(client, "GET", "/info"))
    assert body["name"] == "installsure"
    assert body["environment"] == "production"
    assert body["features"] == {"email": False}
    assert set(body) == {"name", "version", "environment", "build", "features"}


def test_redis_latency_reaches_metrics() -> None:
    """The Redis check's latency is exported as a Prometheus gauge."""
    client = client_for(HealthSources(checks={"redis": ok(3.5)}))
    fetch(client, "GET", "/readyz")
    from tests.http.helpers import body_of

    text = body_of(client, fetch(client, "GET", "/metrics")).decode()
    assert "installsure_redis_ping_latency_seconds 0.0035" in text
    assert 'installsure_health_check_up{check="redis"} 1.0' in text


def test_check_builders_report_latency_and_failures() -> None:
    """ping_check uses the reported latency; timed_check times the call; errors are down."""
    from installsure.api.health import ping_check, timed_check

    ticks = iter([10.0, 10.004])
    sources = HealthSources(
        checks={
            "redis": ping_check(lambda: defer.succeed(0.25)),
            "database": timed_check(lambda: defer.succeed(1), clock=lambda: next(ticks)),
            "storage": timed_check(lambda: defer.fail(OSError("disk gone"))),
        }
    )
    client = client_for(sources)
    checks = json_of(client, fetch(client, "GET", "/readyz"))["checks"]
    assert checks["redis"] == {"status": "up", "latencyMs": 0.25}
    assert checks["database"] == {"status": "up", "latencyMs": 4.0}
    assert checks["storage"] == {"status": "down", "message": "disk gone"}
