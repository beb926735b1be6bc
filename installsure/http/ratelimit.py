"""Fixed-window rate limits kept in Redis, so every process shares the same counters.

One Lua call per request counts its hits (per principal and, for signed-in requests,
per address too) and reads each window's remaining time atomically. When Redis is
unavailable the limiter FAILS OPEN: an outage of Redis must not take the API down with
it. After a failure it stops asking Redis for a short pause, so requests do not each
wait for a command timeout while Redis is down.

Failed authentications have a rule of their own (``http.rate_limit_failed_auth``),
counted per client address by :class:`AuthFailures`: before credentials are checked,
an address that used up its failures gets 429 without them being looked at; each
failure counts one. The count only grows, so an attacker cannot reset it by
succeeding once with an account of their own. Many attempts in flight at once may all
pass the first look, but each failure's count is atomic and every one past the limit
answers 429, so the answers are right however the requests interleave.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen
from twisted.internet import defer
from twisted.logger import Logger

from installsure.http.context import RequestContext
from installsure.http.errors import ApiError
from installsure.http.settings import FAILED_AUTH_RULE, RateRule
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.http.ratelimit")

# One hit on each of KEYS, ARGV[i] the window of KEYS[i] in ms; {count, ttl} per key.
HIT_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if count == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[i])
    ttl = tonumber(ARGV[i])
  end
  out[#out + 1] = count
  out[#out + 1] = ttl
end
return out
"""

PEEK_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
return {count, redis.call('PTTL', KEYS[1])}
"""


@frozen
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the window resets.
    reset: int
    #: Hits counted in the window (with this one, for a counted hit).
    hits: int = 0

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"RateLimit-Limit", str(self.limit).encode()),
            (b"RateLimit-Remaining", str(self.remaining).encode()),
            (b"RateLimit-Reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            out.append((b"Retry-After", str(self.reset).encode()))
        return out

    def error(self, what: str = "Too many requests") -> ApiError:
        return ApiError(
            "RATE_LIMITED",
            f"{what}; try again in {self.reset} s.",
            headers=self.headers(),
        )


class RateLimiter:
    """Counts hits per (rule, key) in Redis; ``check`` never fails, it fails open."""

    def __init__(
        self,
        redis: RedisCommands,
        rules: Mapping[str, RateRule],
        *,
        pause_after_failure: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if "default" not in rules:
            raise ValueError("rate limiter rules need a 'default' rule")
        self._redis = redis
        self._rules = dict(rules)
        self._script = redis.script("ratelimit_hit", HIT_SCRIPT)
        self._peek = redis.script("ratelimit_peek", PEEK_SCRIPT)
        self._pause = pause_after_failure
        self._clock = clock
        self._paused_until = 0.0
        self._failing = False
        #: Failed authentications, when the rules have a ``failed_auth`` one (those of
        #: :func:`~installsure.http.factory.rate_rules` always do).
        self.auth_failures = AuthFailures(self) if FAILED_AUTH_RULE in rules else None

    def has_rule(self, name: str) -> bool:
        return name in self._rules

    def rule(self, name: str) -> RateRule:
        try:
            return self._rules[name]
        except KeyError:
            raise ValueError(
                f"no rate limit named {name!r}; configure http.rate_limits.{name}"
            ) from None

    def check(self, rule_name: str, key: str) -> defer.Deferred[RateDecision | None]:
        """Count one hit; ``None`` means "not counted" (Redis unavailable: let it through)."""
        def first(decisions: list[RateDecision] | None) -> RateDecision | None:
            return decisions[0] if decisions is not None else None

        return self.check_all([(rule_name, key)]).addCallback(first)

    def check_all(
        self, hits: Sequence[tuple[str, str]]
    ) -> defer.Deferred[list[RateDecision] | None]:
        """Count one hit on each ``(rule, key)`` in one Redis call (a request counted per
        principal and per address pays one round trip); the decisions in that order, or
        ``None`` when Redis is unavailable."""
        rules = [self.rule(rule_name) for rule_name, _key in hits]
        if self._paused():
            return defer.succeed(None)
        keys = [self._redis.key("ratelimit", rule_name, key) for rule_name, key in hits]
        windows = [_window_ms(rule) for rule in rules]
        try:
            d: defer.Deferred[Any] = self._script(keys, windows)
        except Exception:
            self._failed(None)
            return defer.succeed(None)

        def decide(reply: Any) -> list[RateDecision]:
            self._answered()
            return [
                _decision(rule, int(reply[2 * i]), int(reply[2 * i + 1]), count=True)
                for i, rule in enumerate(rules)
            ]

        d.addCallbacks(decide, self._failed)
        return d

    def peek(self, rule_name: str, key: str) -> defer.Deferred[RateDecision | None]:
        """Whether one more hit would still be allowed, without counting one."""
        rule = self.rule(rule_name)
        if self._paused():
            return defer.succeed(None)
        try:
            d: defer.Deferred[Any] = self._peek([self._redis.key("ratelimit", rule_name, key)], [])
        except Exception:
            self._failed(None)
            return defer.succeed(None)

        def decide(reply: Any) -> RateDecision:
            self._answered()
            return _decision(rule, int(reply[0]), int(reply[1]), count=False)

        d.addCallbacks(decide, self._failed)
        return d

    def _paused(self) -> bool:
        return self._failing and self._clock() < self._paused_until

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("rate limiting works again: Redis answers")

    def _failed(self, failure: Any) -> None:
        self._paused_until = self._clock() + self._pause
        if not self._failing:
            self._failing = True
            reason = failure.getErrorMessage() if failure is not None else "client error"
            log.warn(
                "rate limiting is off while Redis is unavailable (requests pass): {reason}",
                reason=reason,
            )


def _window_ms(rule: RateRule) -> int:
    return max(1, int(rule.window * 1000))


def _decision(rule: RateRule, hits: int, ttl_ms: int, *, count: bool) -> RateDecision:
    # A key that does not exist (yet) resets a whole window from now.
    reset = max(1, math.ceil((ttl_ms if ttl_ms > 0 else _window_ms(rule)) / 1000))
    return RateDecision(
        # A hit is allowed up to the limit; a peek asks about the next one.
        allowed=hits <= rule.requests if count else hits < rule.requests,
        limit=rule.requests,
        remaining=max(0, rule.requests - hits),
        reset=reset,
        hits=hits,
    )


def client_key(ctx: RequestContext) -> str:
    """The key failed authentications of this request's client address count under."""
    return f"ip:{ctx.remote}"


class AuthFailures:
    """Failed authentications per key (a client address) under ``failed_auth``.

    The HTTP layer uses it around its authentication hook (:func:`authenticate_counted`);
    a login handler uses the same two calls around checking a password.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._rule = limiter.rule(FAILED_AUTH_RULE)

    async def refuse_if_locked_out(self, key: str) -> None:
        """Raise 429 when ``key`` has no failure left in the current window."""
        decision = await self._limiter.peek(FAILED_AUTH_RULE, key)
        if decision is not None and not decision.allowed:
            raise decision.error("Too many failed authentications from this address")

    async def failed(self, key: str, error: ApiError) -> ApiError:
        """Count one failure; the error to answer with: ``error`` with how many are left,
        or 429 once they are used up."""
        decision = await self._limiter.check(FAILED_AUTH_RULE, key)
        if decision is None:
            return error
        # The failure whose atomic count reaches the limit is the one that locks the key
        # out: one line per key and window, however many processes there are.
        if decision.hits == self._rule.requests:
            log.warn(
                "{key} locked out of authentication for {seconds}s after {count} failures",
                key=key, seconds=decision.reset, count=decision.hits,
            )
        if not decision.allowed:
            return decision.error("Too many failed authentications from this address")
        return ApiError(
            error.code,
            error.message,
            status=error.status,
            details=error.details,
            headers=(*error.headers, *decision.headers()),
        )


async def authenticate_counted(
    authenticate: Callable[[RequestContext, str], Any],
    ctx: RequestContext,
    requirement: str,
    limiter: RateLimiter | None,
) -> Any:
    """``authenticate(ctx, requirement)``, refused up front for a locked-out client
    address, with every 401 counted as one failure of that address."""
    failures = limiter.auth_failures if limiter is not None else None
    if failures is not None:
        await failures.refuse_if_locked_out(client_key(ctx))
    try:
        user = authenticate(ctx, requirement)
        if inspect.isawaitable(user):
            user = await user
    except ApiError as error:
        # 403 is a caller who proved who they are; only wrong credentials count.
        if failures is None or error.status != 401:
            raise
        raise await failures.failed(client_key(ctx), error) from None
    return user
