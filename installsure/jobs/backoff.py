"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import random

from attrs import field, frozen

from installsure.jobs.settings import BACKOFF_KINDS


@frozen
class BackoffPolicy:
    """``fixed``: ``delay`` every time; ``exponential``: ``delay * 2**(n-1)``;
    ``exponential_jitter``: uniformly random in [0, exponential] ("full jitter", so
    retries of many jobs that failed together spread out); all capped at ``max_delay``."""

    kind: str = "exponential"
    delay: float = 1.0
    max_delay: float = 3600.0
    _random: random.Random = field(factory=random.Random, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.kind not in BACKOFF_KINDS:
            raise ValueError(
                f"backoff kind must be one of {', '.join(BACKOFF_KINDS)}, got {self.kind!r}"
            )
        if self.delay < 0 or self.max_delay < 0:
            raise ValueError("backoff delay and max_delay must be 0 or more")

    def delay_for(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 for the first)."""
        n = max(1, failures)
        # min() before the power keeps huge attempt counts from overflowing.
        base = self.delay if self.kind == "fixed" else self.delay * 2.0 ** min(n - 1, 62)
        capped = min(base, self.max_delay)
        if self.kind == "exponential_jitter":
            return self._random.uniform(0.0, capped)
        return capped

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "delay": self.delay, "max": self.max_delay}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> BackoffPolicy:
        return cls(
            kind=str(data.get("kind", "exponential")),
            delay=float(data.get("delay", 1.0)),  # type: ignore[arg-type]
            max_delay=float(data.get("max", 3600.0)),  # type: ignore[arg-type]
        )
