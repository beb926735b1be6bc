"""Fixed-window rate limits kept in Redis, so every process shares the same counters.

One Lua call per request asks everything the request is limited by: its hit under the
route's rule (per principal once signed in, else per address), for a signed-in request
its hit under the per-address rule, and whether its address is locked out of
authentication; each window's remaining time is read atomically with its count. When
Redis is unavailable the limiter FAILS OPEN: an outage of Redis must not take the API
down with it. After a failure it stops asking Redis for a short pause, so requests do
not each wait for a command timeout while Redis is down.

Failed authentications have a rule of their own (``http.rate_limit_failed_auth``),
counted per client address by :class:`AuthFailures`: each failure counts one, and an
address that used up its failures gets 429 on every route that needs credentials, with
wrong ones and with right ones alike, until the window ends (so a locked-out address
learns nothing from its guesses). Credentials are checked locally before that question
is asked with the request's other limits, so a signed-in request pays one Redis call
in all. The count only grows, so an attacker cannot reset it by succeeding once with an
account of their own. Many attempts in flight at once may all find the address not yet
locked out, but each failure's count is atomic and every one past the limit answers
429, so the answers are right however the requests interleave.
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
from installsure.http.settings import ADDRESS_RULE, FAILED_AUTH_RULE, RateRule
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.http.ratelimit")

# For each of KEYS, ARGV[i] is the window of its rule in ms, or -1 to read the count
# without counting a hit (a peek); the reply is {count, ttl in ms} for each key in turn.
LIMITS_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[i])
  local count
  if window < 0 then
    count = tonumber(redis.call('GET', key) or '0')
  else
    count = redis.call('INCR', key)
  end
  local ttl = redis.call('PTTL', key)
  if window >= 0 and (count == 1 or ttl < 0) then
    redis.call('PEXPIRE', key, window)
    ttl = window
  end
  out[#out + 1] = count
  out[#out + 1] = ttl
end
return out
"""


#: What a locked-out address is told (with 429 and ``Retry-After``).
LOCKED_OUT = "Too many failed authentications from this address"


@frozen
class RateQuery:
    """One question for :meth:`RateLimiter.ask`: count a hit of ``key`` under the rule
    ``rule`` (or, with ``count=False``, whether one more would still be allowed)."""

    rule: str
    key: str
    count: bool = True


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
        self._script = redis.script("ratelimit_limits", LIMITS_SCRIPT)
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

        return self.ask([RateQuery(rule_name, key)]).addCallback(first)

    def ask(self, queries: Sequence[RateQuery]) -> defer.Deferred[list[RateDecision] | None]:
        """Answer every query in one Redis call, in the order given; ``None`` when Redis
        is unavailable (nothing was counted: let the request through)."""
        rules = [self.rule(query.rule) for query in queries]
        if self._paused():
            return defer.succeed(None)
        keys = [self._redis.key("ratelimit", query.rule, query.key) for query in queries]
        windows = [_window_ms(rule) if query.count else -1
                   for query, rule in zip(queries, rules, strict=True)]
        try:
            d: defer.Deferred[Any] = self._script(keys, windows)
        except Exception:
            self._failed(None)
            return defer.succeed(None)

        def decide(reply: Any) -> list[RateDecision]:
            self._answered()
            return [
                _decision(rule, int(reply[2 * i]), int(reply[2 * i + 1]), count=query.count)
                for i, (query, rule) in enumerate(zip(queries, rules, strict=True))
            ]

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

    The HTTP layer counts the failures of its authentication hook
    (:func:`authenticate_counted`) and asks whether an address is locked out along with
    a request's other limits (:func:`admit`).
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._rule = limiter.rule(FAILED_AUTH_RULE)

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
            return decision.error(LOCKED_OUT)
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
    """``authenticate(ctx, requirement)``, with every 401 counted as one failure of the
    client address (429 once they are used up). Whether an address is locked out is
    asked afterwards, with the request's own limits (:func:`admit`)."""
    failures = limiter.auth_failures if limiter is not None else None
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


async def admit(
    limiter: RateLimiter,
    ctx: RequestContext,
    *,
    rule: str | None,
    authenticated: bool,
) -> None:
    """Ask, in one Redis call, everything this request is limited by (see the module
    docstring): raise 429 for a locked-out address (on a route that needs credentials),
    for an address over its budget, or for a principal or address over the route's
    rule; otherwise add the route rule's ``RateLimit-*`` headers to the response."""
    address = client_key(ctx)
    queries = []
    locked_out_asked = authenticated and limiter.auth_failures is not None
    if locked_out_asked:
        queries.append(RateQuery(FAILED_AUTH_RULE, address, count=False))
    if rule is not None:
        queries.append(RateQuery(rule, f"user:{ctx.user_id}" if ctx.user_id else address))
        if ctx.user_id and limiter.has_rule(ADDRESS_RULE):
            queries.append(RateQuery(ADDRESS_RULE, address))
    if not queries:
        return
    decisions = await limiter.ask(queries)
    if decisions is None:
        return
    if locked_out_asked:
        locked_out, *decisions = decisions
        if not locked_out.allowed:
            raise locked_out.error(LOCKED_OUT)
    if not decisions:
        return
    route_decision, *address_decisions = decisions
    for decision in address_decisions:
        if not decision.allowed:
            raise decision.error("Too many requests from this address")
    if not route_decision.allowed:
        raise route_decision.error()
    for name, value in route_decision.headers():
        ctx.add_header(name, value)
