"""Login throttling: growing waits after repeated failures, per account and per address.

Each failed login counts one failure for the e-mail address tried (whether or not an
account has it, so the throttle says nothing about which addresses exist) and one for
the client address. Past the free failures (``auth.login_free_failures_per_account``,
``..._per_address``) each further failure makes that key wait before the next attempt:
``login_delay``, then twice that, four times, ... up to ``login_delay_max``. A login
attempted while a key waits is answered 429 ``RATE_LIMITED`` with ``Retry-After``
without looking at the password. Failures are forgotten ``login_failure_memory`` after
the last one; a successful login forgets the account's at once (not the address's, so
an attacker cannot reset it by signing in to an account of their own).

Counts live in Redis (one Lua call per check or failure, Redis's clock), so every
process sees them. Like the rate limiter it fails open: while Redis is unavailable
logins are not throttled (the argon2 cost and the password pool's queue limit still
bound how fast passwords can be tried).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from attrs import frozen
from twisted.logger import Logger

from installsure.auth.settings import AuthSettings
from installsure.http.errors import ApiError
from installsure.redis.interfaces import RedisCommands, RedisReplyError, RedisUnavailable

log = Logger(namespace="installsure.auth.throttle")

#: KEYS: the throttle hashes. ARGV[1]: failure memory in ms; then, per key, its free
#: failures, first delay and longest delay in ms. Returns the longest wait in ms now set.
FAIL_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local memory = tonumber(ARGV[1])
local longest = 0
for i, key in ipairs(KEYS) do
  local free = tonumber(ARGV[2 + (i - 1) * 3])
  local first = tonumber(ARGV[3 + (i - 1) * 3])
  local most = tonumber(ARGV[4 + (i - 1) * 3])
  local failures = redis.call('HINCRBY', key, 'failures', 1)
  local delay = 0
  if failures > free then
    delay = math.min(most, first * 2 ^ math.min(failures - free - 1, 40))
    delay = math.floor(delay)
    redis.call('HSET', key, 'until', now + delay)
  end
  redis.call('PEXPIRE', key, math.max(memory, delay))
  if delay > longest then longest = delay end
end
return longest
"""

#: KEYS: the throttle hashes. Returns the longest wait left in ms (0: none).
WAIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for _, key in ipairs(KEYS) do
  local until_ms = tonumber(redis.call('HGET', key, 'until') or '0')
  if until_ms - now > wait then wait = until_ms - now end
end
return wait
"""


@frozen
class ThrottleRule:
    free_failures: int
    first_delay_ms: int
    max_delay_ms: int


def throttled(wait_ms: int) -> ApiError:
    seconds = max(1, math.ceil(wait_ms / 1000))
    return ApiError(
        "RATE_LIMITED",
        f"Too many failed sign-ins; try again in {seconds} s.",
        headers=((b"Retry-After", str(seconds).encode()),),
    )


class LoginThrottle:
    """See the module docstring. Keys: ``email_key`` (lower-cased address), ``address``."""

    def __init__(self, redis: RedisCommands, settings: AuthSettings) -> None:
        self._redis = redis
        self._fail = redis.script("login_throttle_fail", FAIL_SCRIPT)
        self._wait = redis.script("login_throttle_wait", WAIT_SCRIPT)
        self._memory_ms = int(settings.login_failure_memory * 1000)
        first = max(1, int(settings.login_delay * 1000))
        most = max(first, int(settings.login_delay_max * 1000))
        self._account = ThrottleRule(settings.login_free_failures_per_account, first, most)
        self._address = ThrottleRule(settings.login_free_failures_per_address, first, most)

    def _keys(self, email_key: str, address: str) -> list[str]:
        # Hashed: Redis need not hold the e-mail addresses people tried.
        account = hashlib.sha256(email_key.encode("utf-8")).hexdigest()[:32]
        return [self._redis.key("throttle", "account", account),
                self._redis.key("throttle", "address", address)]

    async def refuse_if_waiting(self, email_key: str, address: str) -> None:
        """Raise 429 with ``Retry-After`` while either key must wait."""
        try:
            wait_ms = int(await self._wait(self._keys(email_key, address), []))
        except (RedisUnavailable, RedisReplyError) as error:
            self._failed_open(error)
            return
        if wait_ms > 0:
            raise throttled(wait_ms)

    async def failed(self, email_key: str, address: str) -> int:
        """Count one failure for both keys; the wait in ms it set (0: none yet)."""
        args: list[Any] = [self._memory_ms]
        for rule in (self._account, self._address):
            args += [rule.free_failures, rule.first_delay_ms, rule.max_delay_ms]
        try:
            wait_ms = int(await self._fail(self._keys(email_key, address), args))
        except (RedisUnavailable, RedisReplyError) as error:
            self._failed_open(error)
            return 0
        if wait_ms > 0:
            log.info("sign-in throttled for {seconds}s after repeated failures from {address}",
                     seconds=round(wait_ms / 1000, 1), address=address)
        return wait_ms

    async def succeeded(self, email_key: str) -> None:
        """Forget the account's failures."""
        try:
            await self._redis.execute("DEL", self._keys(email_key, "-")[0])
        except (RedisUnavailable, RedisReplyError) as error:
            self._failed_open(error)

    def _failed_open(self, error: Exception) -> None:
        log.warn("login throttling skipped: Redis is unavailable ({error})", error=str(error))
