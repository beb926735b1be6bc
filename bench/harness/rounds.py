"""Alternating rounds, the figures they give, their medians and ratios.

Each round runs every contender once, always in the same order (ours, then the peers),
so two contenders' figures of one round are at most a few minutes apart. A shared
machine's speed drifts over a run; the ratio within each round sees less of that drift
than the ratio of medians, and the spread of those per-round ratios shows how much of
the drift is left in the verdict.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Rounds:
    """``for index, name in Rounds(names, count)``: round by round, contender by contender.

    A contender that cannot run at all (its setting is missing, say) is ``skip``-ped
    with a reason and left out of the rounds still to come.
    """

    def __init__(self, contenders: Sequence[str], count: int) -> None:
        self.contenders = list(contenders)
        self.count = count
        self.skipped: dict[str, str] = {}

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for index in range(self.count):
            for name in self.contenders:
                if name not in self.skipped:
                    yield index, name

    def skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        print(f"  SKIPPING {name}: {reason}")

    def label(self, index: int, name: str) -> str:
        return f"round {index + 1}/{self.count}: {name}"


@dataclass(frozen=True)
class Ratio:
    """a / b: of the two medians, and within each round both were measured in."""

    of_medians: float
    by_round: tuple[float, ...]

    def by_round_text(self) -> str:
        """``median (lowest-highest)`` of the per-round ratios, or ``-``."""
        if not self.by_round:
            return "-"
        return (f"{statistics.median(self.by_round):.2f}x "
                f"({min(self.by_round):.2f}-{max(self.by_round):.2f})")


class Figures(Generic[T]):
    """What each round gave, by contender and key (a route, a metric).

    A round that failed has None in its place, so round i of one contender still pairs
    with round i of another.
    """

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._values: dict[tuple[str, str], list[T | None]] = {}

    def record(self, contender: str, key: str, index: int, value: T) -> None:
        self._values.setdefault((contender, key), [None] * self.rounds)[index] = value

    def series(self, contender: str, key: str) -> list[T | None]:
        return self._values.get((contender, key), [None] * self.rounds)

    def measured(self, contender: str, key: str) -> list[T]:
        return [v for v in self.series(contender, key) if v is not None]

    def median(
        self, contender: str, key: str, figure: Callable[[T], float | None]
    ) -> float | None:
        """The median of ``figure`` over the rounds that have it, or None."""
        values = [f for v in self.measured(contender, key) if (f := figure(v)) is not None]
        return statistics.median(values) if values else None

    def ratio(
        self, a: str, b: str, key: str, figure: Callable[[T], float | None]
    ) -> Ratio | None:
        """``a`` over ``b`` for ``figure``, or None when either has no figure."""
        top, bottom = self.median(a, key, figure), self.median(b, key, figure)
        if top is None or not bottom:
            return None
        by_round = []
        for x, y in zip(self.series(a, key), self.series(b, key), strict=True):
            if x is None or y is None:
                continue
            fx, fy = figure(x), figure(y)
            if fx is not None and fy:
                by_round.append(fx / fy)
        return Ratio(top / bottom, tuple(by_round))
