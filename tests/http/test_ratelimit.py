"""Rate limits against a private redis-server: shared counters, headers, 429, fail-open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from installsure.http import HttpSettings, RateLimiter, RateRule, Router, build_site, rate_rules
from installsure.redis.client import RedisService
from installsure.redis.target import RedisTarget
from tests.fixtures.redis import RedisServerProcess
from tests.http.helpers import captured_events


@pytest.fixture
def services(redis_server: RedisServerProcess) -> Iterator[list[RedisService]]:
    """Two Redis clients, as two processes would have; stopped afterwards."""
    made = [
        RedisService(RedisTarget.from_url(redis_server.url), command_timeout=1.0, key_prefix="t:")
        for _ in range(2)
    ]
    for s in made:
        s.startService()
    for s in made:
        pytest_twisted.blockon(s.when_connected(5))
    yield made
    for s in made:
        pytest_twisted.blockon(s.stopService())


RULES = {"default": RateRule(3, 60), "login": RateRule(1, 2)}


@pytest_twisted.ensureDeferred
async def test_two_limiters_share_one_counter(services: list[RedisService]) -> None:
    """Hits counted by one process's limiter count for the other's too."""
    first, second = (RateLimiter(s, RULES) for s in services)
    decisions = [
        await first.check("default", "ip:1.2.3.4"),
        await second.check("default", "ip:1.2.3.4"),
        await first.check("default", "ip:1.2.3.4"),
        await second.check("default", "ip:1.2.3.4"),
    ]
    assert all(d is not None for d in decisions)
    assert [d.remaining for d in decisions if d] == [2, 1, 0, 0]
    assert [d.allowed for d in decisions if d] == [True, True, True, False]
    other = await first.check("default", "ip:5.6.7.8")
    assert other is not None
    assert other.allowed
    assert other.remaining == 2


def test_unknown_rule_name_is_a_clear_error(services: list[RedisService]) -> None:
    """Asking for a limit that is not configured names the setting to add."""
    limiter = RateLimiter(services[0], RULES)
    with pytest.raises(ValueError, match=r"http.rate_limits.upload"):
        limiter.check("upload", "ip:x")


@pytest.fixture
def api_url(services: list[RedisService]) -> Iterator[str]:
    router = Router()

    @router.route("GET", "/api/thing")
    def thing(_ctx: Any) -> dict[str, bool]:
        return {"ok": True}

    @router.route("POST", "/api/auth/login", rate_limit="login")
    def login(_ctx: Any) -> dict[str, bool]:
        return {"ok": True}

    settings = HttpSettings(rate_limit_default="3/60", rate_limits={"login": "1/60"})
    limiter = RateLimiter(services[0], rate_rules(settings), pause_after_failure=0.2)
    site = build_site(router, settings, rate_limiter=limiter)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    yield f"http://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_headers_and_429_with_retry_after(api_url: str) -> None:
    """Responses carry RateLimit-*; over the limit comes 429 RATE_LIMITED with Retry-After;
    health probes are never limited."""
    codes, remaining = [], []
    for _ in range(4):
        response = await treq.get(api_url + "/api/thing", persistent=False)
        codes.append(response.code)
        remaining.append(response.headers.getRawHeaders("RateLimit-Remaining", ["?"])[0])
        body = await response.json()
    assert codes == [200, 200, 200, 429]
    assert remaining == ["2", "1", "0", "0"]
    assert body["code"] == "RATE_LIMITED"
    assert response.headers.getRawHeaders("RateLimit-Limit") == ["3"]
    retry_after = int(response.headers.getRawHeaders("Retry-After")[0])
    assert 1 <= retry_after <= 60
    login = [
        (await treq.post(api_url + "/api/auth/login", persistent=False)).code for _ in range(2)
    ]
    assert login == [200, 429]
    metrics = await treq.get(api_url + "/metrics", persistent=False)
    assert metrics.code == 200
    assert metrics.headers.getRawHeaders("RateLimit-Limit") is None


@pytest_twisted.ensureDeferred
async def test_fails_open_when_redis_is_down(
    api_url: str, redis_server: RedisServerProcess
) -> None:
    """With Redis stopped, requests pass (without RateLimit headers) instead of failing,
    and the outage is logged once, not per request."""
    redis_server.stop()
    codes = []
    with captured_events("installsure.http.ratelimit") as events:
        for _ in range(6):
            response = await treq.get(api_url + "/api/thing", persistent=False)
            codes.append(response.code)
            assert response.headers.getRawHeaders("RateLimit-Remaining") is None
            await response.content()
    assert codes == [200] * 6
    assert len(events) == 1
    assert "Redis is unavailable" in events[0]["log_format"]


def test_routes_naming_an_unconfigured_limit_fail_at_start(services: list[RedisService]) -> None:
    """A route asking for a limit nobody configured stops the app from being built."""
    router = Router()
    router.add("POST", "/api/files/upload", lambda ctx: None, rate_limit="uploads")
    with pytest.raises(ValueError, match=r"no rate limit named 'uploads'"):
        build_site(router, HttpSettings(), rate_limiter=RateLimiter(services[0], RULES))
