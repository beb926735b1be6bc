"""Rate limits against a private redis-server: shared counters, headers, 429, fail-open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor

from installsure.auth.operator import OperatorAuthenticator
from installsure.http import HttpSettings, RateLimiter, RateRule, Router, build_site, rate_rules
from installsure.http.ratelimit import RateQuery
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


@pytest_twisted.ensureDeferred
async def test_ask_answers_every_query_under_its_own_rule_in_one_call(
    services: list[RedisService],
) -> None:
    """``ask`` counts one hit on every (rule, key) given, each against its own limit and
    window, and reads a peeked one without counting it, in one script call, answering
    in the order asked."""
    limiter = RateLimiter(services[0], RULES)
    both = [RateQuery("default", "user:u1"), RateQuery("login", "ip:9.9.9.9")]
    calls_before = await _script_calls(services[0])
    first = await limiter.ask(both)
    assert await _script_calls(services[0]) == calls_before + 1
    peeked = await limiter.ask([RateQuery("login", "ip:9.9.9.9", count=False),
                                RateQuery("default", "ip:never-hit", count=False)])
    assert peeked is not None
    assert [(d.hits, d.allowed) for d in peeked] == [(1, False), (0, True)]
    second = await limiter.ask(both)
    assert first is not None
    assert second is not None
    assert [(d.limit, d.remaining, d.allowed) for d in first] == [(3, 2, True), (1, 0, True)]
    assert [(d.limit, d.remaining, d.allowed) for d in second] == [(3, 1, True), (1, 0, False)]
    assert second[1].reset <= 2 < second[0].reset
    login_ttl = await services[0].execute(
        "PTTL", services[0].key("ratelimit", "login", "ip:9.9.9.9"))
    assert 0 < login_ttl <= 2000


async def _script_calls(redis: RedisService) -> int:
    """EVAL and EVALSHA calls the server has run so far."""
    stats = await redis.execute("INFO", "commandstats")
    total = 0
    for line in str(stats).splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            total += int(line.split("calls=")[1].split(",")[0])
    return total


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


SECRET = "operator-secret-for-tests"


@pytest.fixture
def admin_site(services: list[RedisService]) -> Iterator[tuple[list[str], list[int]]]:
    """Two sites (two processes' worth: their own Redis clients) with an operator route
    and a public one, client addresses taken from X-Forwarded-For; yields their base
    URLs and a list that grows by one each time the operator token is checked."""
    checked: list[int] = []
    operator = OperatorAuthenticator(SECRET)

    def authenticate(ctx: Any, requirement: str) -> Any:
        checked.append(1)
        return operator(ctx, requirement)

    router = Router()

    @router.route("GET", "/api/admin", auth="admin")
    def admin(_ctx: Any) -> dict[str, bool]:
        return {"ok": True}

    @router.route("GET", "/api/public")
    def public(_ctx: Any) -> dict[str, bool]:
        return {"ok": True}

    settings = HttpSettings(rate_limit_default="10000/60", rate_limit_failed_auth="3/60",
                            trust_proxy=True)
    ports = []
    for service in services:
        limiter = RateLimiter(service, rate_rules(settings), pause_after_failure=0.2)
        site = build_site(router, settings, rate_limiter=limiter, authenticate=authenticate)
        ports.append(reactor.listenTCP(0, site, interface="127.0.0.1"))  # type: ignore[attr-defined]
    yield [f"http://127.0.0.1:{p.getHost().port}" for p in ports], checked
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


async def _get(url: str, token: str | None, client: str = "198.51.100.7") -> tuple[int, Any, Any]:
    headers = {"X-Forwarded-For": client}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await treq.get(url, headers=headers, persistent=False)
    return response.code, response.headers, await response.json()


@pytest_twisted.ensureDeferred
async def test_failed_authentications_lock_the_address_out_whatever_it_sends(
    admin_site: tuple[list[str], list[int]],
) -> None:
    """Wrong operator tokens count per address: the first three are 401 with how many
    are left, then 429 with Retry-After and RateLimit-* for wrong, right and missing
    tokens alike (a locked-out address learns nothing from its guesses); other
    addresses and public routes are not affected."""
    (base, _other), checked = admin_site
    answers = [await _get(base + "/api/admin", "wrong") for _ in range(3)]
    assert [code for code, _h, _b in answers] == [401, 401, 401]
    assert [h.getRawHeaders("RateLimit-Remaining") for _c, h, _b in answers] == [
        ["2"], ["1"], ["0"]
    ]
    assert all(h.getRawHeaders("RateLimit-Limit") == ["3"] for _c, h, _b in answers)
    assert all(h.getRawHeaders("Retry-After") is None for _c, h, _b in answers)
    assert len(checked) == 3
    for token in ["wrong", SECRET, None]:
        code, headers, body = await _get(base + "/api/admin", token)
        assert code == 429, (token, body)
        assert body["code"] == "RATE_LIMITED"
        assert "failed authentications" in body["error"]
        assert 1 <= int(headers.getRawHeaders("Retry-After")[0]) <= 60
        assert headers.getRawHeaders("RateLimit-Limit") == ["3"]
        assert headers.getRawHeaders("RateLimit-Remaining") == ["0"]
        assert headers.getRawHeaders("RateLimit-Reset") is not None
    assert (await _get(base + "/api/admin", SECRET, client="198.51.100.8"))[0] == 200
    assert (await _get(base + "/api/public", None))[0] == 200
    code, _h, body = await _get(base + "/api/admin", SECRET, client="203.0.113.9")
    assert (code, body["data"]) == (200, {"ok": True})


@pytest_twisted.ensureDeferred
async def test_failures_count_across_processes(admin_site: tuple[list[str], list[int]]) -> None:
    """Failures through one process's site lock the address out of the other's too: the
    count lives in Redis."""
    (first, second), _checked = admin_site
    codes = [(await _get(url + "/api/admin", "wrong"))[0] for url in (first, second, first)]
    assert codes == [401, 401, 401]
    assert (await _get(second + "/api/admin", SECRET))[0] == 429


@pytest_twisted.ensureDeferred
async def test_four_hundred_wrong_tokens_at_once_get_exactly_the_limit_of_401s(
    admin_site: tuple[list[str], list[int]],
) -> None:
    """400 wrong tokens sent at once, over 400 connections, get exactly 3 × 401 and
    397 × 429: however the requests interleave, each failure's count is atomic and every
    one past the limit is refused."""
    (base, _other), _checked = admin_site
    answers = await defer.gatherResults(
        [defer.ensureDeferred(_get(base + "/api/admin", "wrong")) for _ in range(400)]
    )
    codes = [code for code, _h, _b in answers]
    assert codes.count(401) == 3
    assert codes.count(429) == 397
    assert all(h.getRawHeaders("Retry-After") for c, h, _b in answers if c == 429)


@pytest_twisted.ensureDeferred
async def test_lockout_is_logged_once(admin_site: tuple[list[str], list[int]]) -> None:
    """Crossing the limit logs one warning naming the address, not one per request."""
    (base, _other), _checked = admin_site
    with captured_events("installsure.http.ratelimit") as events:
        for _ in range(6):
            await _get(base + "/api/admin", "wrong")
    lockouts = [e for e in events if "locked out" in e["log_format"]]
    assert len(lockouts) == 1
    assert lockouts[0]["key"] == "ip:198.51.100.7"


@pytest_twisted.ensureDeferred
async def test_failed_auth_limit_fails_open_when_redis_is_down(
    admin_site: tuple[list[str], list[int]], redis_server: RedisServerProcess,
) -> None:
    """With Redis stopped, wrong tokens get 401 (never 429, no RateLimit headers) and the
    right one still works: the lockout fails open like the other limits."""
    (base, _other), _checked = admin_site
    redis_server.stop()
    for _ in range(5):
        code, headers, _body = await _get(base + "/api/admin", "wrong")
        assert code == 401
        assert headers.getRawHeaders("RateLimit-Remaining") is None
    assert (await _get(base + "/api/admin", SECRET))[0] == 200


def test_named_rate_may_not_shadow_the_failed_auth_rule() -> None:
    """``http.rate_limits.failed_auth`` is refused with the setting to use instead."""
    with pytest.raises(ValueError, match=r"http.rate_limit_failed_auth"):
        HttpSettings(rate_limits={"failed_auth": "1/60"})
