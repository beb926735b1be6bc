"""Fixed-window rate limits kept in Redis, so every process shares the same counters.

One Lua call per request counts the hit and reads the window's remaining time
atomically. When Redis is unavailable the limiter FAILS OPEN: an outage of Redis must
not take the API down with it. After a failure it stops asking Redis for a short
pause, so requests do not each wait for a command timeout while Redis is down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen
from twisted.internet import defer
from twisted.logger import Logger

from installsure.http.errors import ApiError
from installsure.http.settings import RateRule
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.http.ratelimit")

HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


@frozen
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the window resets.
    reset: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"RateLimit-Limit", str(self.limit).encode()),
            (b"RateLimit-Remaining", str(self.remaining).encode()),
            (b"RateLimit-Reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            out.append((b"Retry-After", str(self.reset).encode()))
        return out

    def error(self) -> ApiError:
        return ApiError(
            "RATE_LIMITED",
            f"Too many requests; try again in {self.reset} s.",
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
        self._pause = pause_after_failure
        self._clock = clock
        self._paused_until = 0.0
        self._failing = False

    def rule(self, name: str) -> RateRule:
        try:
            return self._rules[name]
        except KeyError:
            raise ValueError(
                f"no rate limit named {name!r}; configure http.rate_limits.{name}"
            ) from None

    def check(self, rule_name: str, key: str) -> defer.Deferred[RateDecision | None]:
        """Count one hit; ``None`` means "not counted" (Redis unavailable: let it through)."""
        rule = self.rule(rule_name)
        if self._failing and self._clock() < self._paused_until:
            return defer.succeed(None)
        window_ms = max(1, int(rule.window * 1000))
        redis_key = self._redis.key("ratelimit", rule_name, key)
        try:
            d: defer.Deferred[Any] = self._script([redis_key], [window_ms])
        except Exception:
            self._failed(None)
            return defer.succeed(None)

        def decide(reply: Any) -> RateDecision:
            count, ttl_ms = int(reply[0]), int(reply[1])
            if self._failing:
                self._failing = False
                log.info("rate limiting works again: Redis answers")
            reset = max(1, math.ceil(ttl_ms / 1000))
            return RateDecision(
                allowed=count <= rule.requests,
                limit=rule.requests,
                remaining=max(0, rule.requests - count),
                reset=reset,
            )

        d.addCallbacks(decide, self._failed)
        return d

    def _failed(self, failure: Any) -> None:
        self._paused_until = self._clock() + self._pause
        if not self._failing:
            self._failing = True
            reason = failure.getErrorMessage() if failure is not None else "client error"
            log.warn(
                "rate limiting is off while Redis is unavailable (requests pass): {reason}",
                reason=reason,
            )
