"""Login throttling (growing waits per account and per address) and the login rate
limits, over HTTP with a real Redis."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest_twisted

from installsure.http import HttpSettings
from tests.auth.conftest import GENEROUS, MakeStack, Stack, sleep


async def _wait_ms(stack: Stack, kind: str, key: str) -> int:
    """The wait the throttle has set for ``key`` now, in ms, by Redis's clock."""
    if kind == "account":
        key = hashlib.sha256(key.encode()).hexdigest()[:32]
    until = await stack.redis.execute("HGET", stack.redis.key("throttle", kind, key), "until")
    seconds, micros = await stack.redis.execute("TIME")
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return max(0, int(until or 0) - now_ms)


@pytest_twisted.ensureDeferred
async def test_waits_grow_after_the_free_failures_and_success_forgets_them(
    make_stack: MakeStack,
) -> None:
    """Two free failures, then each failure doubles the wait (0.4 s, 0.8 s, 1.6 s); while
    waiting even the right password is 429 with Retry-After; once the wait is over the
    right password signs in and the account's count starts again."""
    stack = await make_stack(login_free_failures_per_account=2, login_delay=0.4,
                             login_delay_max=60)
    await stack.register("tess@example.com")
    for _ in range(2):
        assert (await stack.login("tess@example.com", "wrong-password-0")).status == 401
        assert await _wait_ms(stack, "account", "tess@example.com") == 0
    waits = []
    for _ in range(3):
        answer = await stack.login("tess@example.com", "wrong-password-0")
        assert answer.status == 401, answer.body
        waits.append(await _wait_ms(stack, "account", "tess@example.com"))
        refused = await stack.login("tess@example.com")  # the right password
        assert refused.status == 429, refused.body
        assert refused.body["code"] == "RATE_LIMITED"
        assert int(refused.headers.getRawHeaders("Retry-After")[0]) >= 1
        await sleep(waits[-1] / 1000 + 0.05)
    # Each wait is the previous one doubled (Redis's clock; a little time has passed).
    assert 250 < waits[0] <= 400, waits
    assert 650 < waits[1] <= 800, waits
    assert 1450 < waits[2] <= 1600, waits
    assert (await stack.login("tess@example.com")).status == 200
    # Forgotten: two more failures are free again.
    for _ in range(2):
        await stack.login("tess@example.com", "wrong-password-0")
    assert await _wait_ms(stack, "account", "tess@example.com") == 0


@pytest_twisted.ensureDeferred
async def test_failures_from_one_address_throttle_it_for_every_account(
    make_stack: MakeStack,
) -> None:
    """Failures spread over many e-mail addresses (known or not) count for the client
    address: past its free failures, a login for yet another account waits too."""
    stack = await make_stack(login_free_failures_per_address=3, login_delay=5)
    await stack.register("una@example.com")
    for n in range(3):
        assert (await stack.login(f"guess{n}@example.com")).status == 401
    assert (await stack.login("una@example.com", "wrong-password-0")).status == 401
    assert await _wait_ms(stack, "address", "127.0.0.1") > 4000
    throttled = await stack.login("una@example.com")
    assert throttled.status == 429
    # Unknown addresses leave the same trace as known ones: nothing tells them apart.
    assert await _wait_ms(stack, "account", "guess0@example.com") == 0


@pytest_twisted.ensureDeferred
async def test_login_rate_limits_per_account_and_per_address(make_stack: MakeStack) -> None:
    """``login_account`` limits attempts on one account from anywhere and ``login``
    limits sign-in requests from one address, each with 429 and Retry-After."""
    account_limited = HttpSettings(
        rate_limit_default="1000/60", rate_limit_failed_auth="1000/60",
        rate_limits={"login": "1000/60", "login_account": "3/60"})
    stack = await make_stack(http=account_limited)
    await stack.register("vic@example.com")
    for _ in range(3):
        assert (await stack.login("vic@example.com")).status == 200
    limited = await stack.login("VIC@example.com")
    assert limited.status == 429
    assert limited.headers.getRawHeaders("Retry-After") is not None
    assert (await stack.login("other@example.com")).status == 401  # another account


@pytest_twisted.ensureDeferred
async def test_login_rate_limit_per_address(make_stack: MakeStack) -> None:
    """``login`` counts sign-in and registration requests per client address: the
    fourth of three allowed is 429 with the RateLimit headers."""
    address_limited = HttpSettings(
        rate_limit_default="1000/60", rate_limit_failed_auth="1000/60",
        rate_limits={"login": "3/60", "login_account": "1000/60"})
    stack = await make_stack(http=address_limited)
    assert (await stack.register("xena@example.com")).status == 201
    assert (await stack.login("xena@example.com")).status == 200
    assert (await stack.login("nobody@example.com")).status == 401
    limited = await stack.login("xena@example.com")
    assert limited.status == 429
    assert limited.headers.getRawHeaders("RateLimit-Limit") == ["3"]


@pytest_twisted.ensureDeferred
async def test_throttle_fails_open_without_redis(make_stack: MakeStack) -> None:
    """With Redis stopped, logins still work (not throttled, not a 500)."""
    stack = await make_stack(http=GENEROUS)
    await stack.register("wil@example.com")
    await stack.redis.stopService()
    try:
        assert (await stack.login("wil@example.com", "wrong-password-0")).status == 401
        assert (await stack.login("wil@example.com")).status == 200
    finally:
        stack.redis.startService()


@pytest_twisted.ensureDeferred
async def test_address_rule_counts_every_account_from_one_address(
    make_stack: MakeStack,
) -> None:
    """``http.rate_limits.address`` makes signed-in requests of different accounts from
    one address share its budget (each account alone is far under its own limit); it is
    on by default, each signed-in request counted once per principal and once for the
    address."""
    # The default named limits (address 6000/60), a generous per-principal one.
    by_default = await make_stack(http=HttpSettings(
        rate_limit_default="1000/60", rate_limit_failed_auth="1000/60"))
    assert HttpSettings().rate_limits["address"] == "6000/60"
    tokens = [(await by_default.register(f"solo{n}@example.com")).data["accessToken"]
              for n in range(2)]
    assert [(await by_default.call("GET", "/api/auth/me", token=tokens[n % 2])).status
            for n in range(6)] == [200] * 6
    address_key = by_default.redis.key("ratelimit", "address", "ip:127.0.0.1")
    assert int(await by_default.redis.execute("GET", address_key)) == 6
    await by_default.redis.execute("DEL", address_key)

    shared = HttpSettings(
        rate_limit_default="1000/60", rate_limit_failed_auth="1000/60",
        rate_limits={"login": "1000/60", "login_account": "1000/60", "address": "4/60"})
    stack = await make_stack(http=shared)
    tokens = [(await stack.register(f"acct{n}@example.com")).data["accessToken"]
              for n in range(2)]
    answers = [(await stack.call("GET", "/api/auth/me", token=tokens[n % 2])).status
               for n in range(5)]
    assert answers == [200, 200, 200, 200, 429], answers


@pytest_twisted.ensureDeferred
async def test_a_signed_in_request_asks_its_limits_in_one_redis_call(
    make_stack: MakeStack,
) -> None:
    """Once its session is known live, a signed-in request costs one Redis call in all:
    whether its address is locked out, its hit per principal and its hit per address
    are one script call, and nothing else is asked."""
    stack = await make_stack(http=HttpSettings(
        rate_limit_default="1000/60", rate_limit_failed_auth="1000/60"))
    token = (await stack.register("one-call@example.com")).data["accessToken"]
    assert (await stack.call("GET", "/api/auth/me", token=token)).status == 200
    before = await _command_calls(stack)
    assert (await stack.call("GET", "/api/auth/me", token=token)).status == 200
    after = await _command_calls(stack)
    asked = {name: after[name] - before.get(name, 0) for name in after
             if after[name] != before.get(name, 0) and name not in ("info", "ping")}
    # Redis counts the commands a script runs too: the lock-out peek (GET, PTTL) and the
    # two hits (INCR, PTTL each); any other call would add to these.
    assert asked == {"evalsha": 1, "get": 1, "incr": 2, "pttl": 3}, asked


async def _command_calls(stack: Any) -> dict[str, int]:
    """Calls per command the test's Redis has served so far."""
    stats = str(await stack.redis.execute("INFO", "commandstats"))
    calls: dict[str, int] = {}
    for line in stats.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            calls[name] = int(rest.split("calls=")[1].split(",")[0])
    return calls
