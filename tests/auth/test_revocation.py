"""A revoked session is refused by every process within a second, through the shared
Redis: two stacks (each with its own Redis client, subscription, cache and database
pool) stand for two server processes."""

from __future__ import annotations

import time

import pytest_twisted

from tests.auth.conftest import SECRET, MakeStack, Stack, sleep, wait_until
from tests.fixtures.redis import RedisServerProcess
from tests.redis.helpers import eventually


async def _refused_within(stack: Stack, token: str, seconds: float) -> float:
    """Poll /me with ``token`` until it is refused; how long that took."""
    started = time.monotonic()
    while True:
        answer = await stack.call("GET", "/api/auth/me", token=token)
        if answer.status == 401:
            return time.monotonic() - started
        assert answer.status == 200, answer.body
        assert time.monotonic() - started < seconds, f"still accepted after {seconds}s"
        await sleep(0.02)


@pytest_twisted.ensureDeferred
async def test_logout_on_one_process_is_refused_by_another_within_a_second(
    make_stack: MakeStack,
) -> None:
    """Process B has the session cached as live (it served the token just before, and
    its cache would trust it for a minute); a logout on process A makes B refuse the
    token within 1 s."""
    a = await make_stack(revocation_cache_ttl=60)
    b = await make_stack(revocation_cache_ttl=60)
    signed = (await a.register("pat@example.com")).data
    token = signed["accessToken"]
    assert (await b.call("GET", "/api/auth/me", token=token)).status == 200
    session_id = b.auth.tokens.verify(token).session_id
    assert b.auth.revocations.cached(session_id) is False  # B trusts it from its cache
    assert (await a.call("POST", "/api/auth/logout", token=token)).status == 200
    took = await _refused_within(b, token, 1.0)
    assert took < 1.0


@pytest_twisted.ensureDeferred
async def test_deactivation_on_one_process_is_refused_by_another_within_a_second(
    make_stack: MakeStack,
) -> None:
    """An admin deactivating an account on process A ends its sessions on process B too."""
    a = await make_stack(revocation_cache_ttl=60)
    b = await make_stack(revocation_cache_ttl=60)
    await a.register("root@example.com")
    worker = (await a.register("wes@example.com")).data
    token = worker["accessToken"]
    assert (await b.call("GET", "/api/auth/me", token=token)).status == 200
    off = await a.call("PATCH", f"/api/users/{worker['user']['id']}", {"isActive": False},
                       token=SECRET)
    assert off.status == 200
    assert await _refused_within(b, token, 1.0) < 1.0


@pytest_twisted.ensureDeferred
async def test_a_lost_announcement_is_caught_by_the_revocation_set(
    make_stack: MakeStack,
) -> None:
    """Should the pub/sub message never arrive, the revocation set in Redis still
    refuses the session once the cache entry ages out (here 0.3 s)."""
    a = await make_stack(revocation_cache_ttl=0.3)
    b = await make_stack(revocation_cache_ttl=0.3)
    signed = (await a.register("lou@example.com")).data
    token = signed["accessToken"]
    assert (await b.call("GET", "/api/auth/me", token=token)).status == 200
    # Revoke through Redis without announcing: write the key as revoke() would.
    session_id = a.auth.tokens.verify(token).session_id
    await a.redis.execute("SET", a.redis.key("revoked", "session", session_id), "1",
                          "PX", 60_000)
    assert (await b.call("GET", "/api/auth/me", token=token)).status == 200  # still cached
    assert await _refused_within(b, token, 2.0) >= 0.0


@pytest_twisted.ensureDeferred
async def test_without_redis_the_database_decides(make_stack: MakeStack) -> None:
    """With Redis stopped, a token of a session revoked in the database is refused (the
    verifier falls back to the sessions table) and a live one is still accepted."""
    a = await make_stack(revocation_cache_ttl=0)
    live = (await a.register("liv@example.com")).data
    dead = (await a.login("liv@example.com")).data
    await a.call("POST", "/api/auth/logout", token=dead["accessToken"])
    # Forget what this process knows, then take Redis away.
    a.auth.revocations._revoked.clear()
    await a.redis.stopService()
    assert (await a.call("GET", "/api/auth/me", token=live["accessToken"])).status == 200
    assert (await a.call("GET", "/api/auth/me", token=dead["accessToken"])).status == 401
    a.redis.startService()



@pytest_twisted.ensureDeferred
async def test_a_logout_while_redis_is_down_is_refused_everywhere_after_it_returns(
    make_stack: MakeStack, redis_server: RedisServerProcess,
) -> None:
    """A logout on A while Redis is down reaches only the database. B, which trusted
    the session from its cache, stops trusting the cache once its subscription is lost
    and asks the database; once Redis is back, A and B announce the sessions the
    database revoked meanwhile, so a process that never saw the session (C) refuses it
    from the revocation set as well."""
    a = await make_stack(revocation_cache_ttl=60)
    b = await make_stack(revocation_cache_ttl=60)
    token = (await a.register("ros@example.com")).data["accessToken"]
    assert (await b.call("GET", "/api/auth/me", token=token)).status == 200
    session_id = b.auth.tokens.verify(token).session_id
    assert b.auth.revocations.cached(session_id) is False
    redis_server.stop()
    await wait_until(lambda: b.auth.revocations.cached(session_id) is None)
    assert (await a.call("POST", "/api/auth/logout", token=token)).status == 200
    assert (await b.call("GET", "/api/auth/me", token=token)).status == 401
    redis_server.start()
    key = a.redis.key("revoked", "session", session_id)

    async def announced_again() -> None:
        assert await a.redis.execute("EXISTS", key) == 1

    await eventually(announced_again)
    c = await make_stack(revocation_cache_ttl=60)
    assert (await c.call("GET", "/api/auth/me", token=token)).status == 401
    assert (await b.call("GET", "/api/auth/me", token=token)).status == 401
