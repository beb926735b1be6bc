"""Small per-process caches with a bound on their size.

Each holds what is cheap to work out again (a verified token, a matched path, encoded
job options): once full it is emptied and refills with what is in use, which keeps
memory bounded without the bookkeeping of a least-recently-used order.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Put ``key: value`` in ``cache``, emptying it first when it holds ``limit``
    entries; returns ``value``."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
