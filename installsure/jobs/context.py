"""What a processor gets besides its payload."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet import defer
from twisted.internet.defer import Deferred

from installsure.jobs.errors import LeaseLost
from installsure.redis.interfaces import RedisCommands


def call_processor(fn: Callable[..., object], *args: Any) -> Deferred[Any]:
    """Call ``fn`` and return its outcome as a Deferred, whether it returned a plain
    value, a Deferred or a coroutine, or raised."""
    try:
        result = fn(*args)
    except BaseException:
        return defer.fail()
    if isinstance(result, Deferred):
        return result
    if hasattr(result, "__await__") and hasattr(result, "send"):
        return Deferred.fromCoroutine(result)  # type: ignore[arg-type]
    return defer.succeed(result)


@define
class JobContext:
    """The running job: its id, attempt number (1 for the first run) and ways to report.

    ``progress(percent, stage)`` publishes progress; ``once(step, action)`` runs a side
    effect at most once per job (or idempotency key) even when the job runs again after
    a crash, as long as the effect finished before the crash.

    ``lease_lost`` turns true when this worker lost the job's lease (it stalled and
    another worker runs it now). The processor's Deferred is cancelled then, and from
    then on ``once`` raises LeaseLost instead of starting a step.
    """

    job_id: str
    queue: str
    job_type: str
    attempt: int
    max_attempts: int
    idempotency_key: str | None
    created_at: float
    _redis: RedisCommands = field(repr=False)
    _effect_key: Callable[[str], str] = field(repr=False)
    _effect_ttl: float = field(repr=False)
    _report_progress: Callable[[float, str], Deferred[None]] = field(repr=False)
    lease_lost: bool = field(default=False, init=False)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def progress(self, percent: float, stage: str = "") -> Deferred[None]:
        """Record and publish progress (0–100); never fails the job."""
        if not isinstance(percent, int | float) or percent != percent:  # noqa: PLR0124 - NaN
            percent = 0.0
        return self._report_progress(max(0.0, min(100.0, float(percent))), str(stage))

    def once(self, step: str, action: Callable[[], object]) -> Deferred[Any]:
        """Run ``action`` unless this job (same id, or same idempotency key) already ran
        ``step`` to the end; fires with its result, stored as JSON (or its earlier one)."""
        return defer.ensureDeferred(self._once(step, action))

    async def _once(self, step: str, action: Callable[[], object]) -> Any:
        self._refuse_if_lost(step)
        key = self._effect_key(step)
        done = await self._redis.execute("GET", key)
        if done is not None:
            return json.loads(done)
        self._refuse_if_lost(step)
        # An effect that finishes is recorded even if the lease was lost meanwhile: the
        # record is what keeps the run that replaced this one from repeating it.
        result = await call_processor(action)
        try:
            stored = json.dumps(result)
        except (TypeError, ValueError):
            stored = "null"
        await self._redis.execute("SET", key, stored, "PX", round(self._effect_ttl * 1000))
        return result

    def _refuse_if_lost(self, step: str) -> None:
        if self.lease_lost:
            raise LeaseLost(
                f"job {self.job_id} of {self.queue} lost its lease; step {step!r} is "
                "left to the worker that runs it now"
            )
