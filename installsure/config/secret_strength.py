"""Whether a secret is fit to sign production tokens: long, not a placeholder, not a pattern.

A length check alone lets through what people paste while setting up, such as the
example file's ``change-me-...`` line or 32 times the same letter. None of these tests
measures true randomness (nothing can, from one string); they refuse what is plainly
not random, and a secret from ``secrets.token_urlsafe(48)`` passes every one of them
(its variety estimate is about 330 bits; even a 32-character ``token_hex(16)`` is above
85 bits in a hundred thousand draws).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import pairwise

MIN_SECRET_BYTES = 32
MIN_DISTINCT_CHARACTERS = 8
MIN_VARIETY_BITS = 80
HOW_TO_MAKE_ONE = (
    'make one with `python -c "import secrets; print(secrets.token_urlsafe(48))"`'
)

# What example files, tutorials and first attempts write instead of a secret.
_PLACEHOLDER = re.compile(
    r"change[\W_]*(?:me|it|this)|replace[\W_]*(?:me|this)|your[\W_]*(?:jwt[\W_]*|api[\W_]*)?"
    r"(?:secret|key)|placeholder|example|insecure|dummy|do[\W_]*not[\W_]*use|"
    r"(?:test|dev|development|default|my|super)[\W_]*secret|^(?:secret|password)",
    re.IGNORECASE,
)


def secret_weakness(secret: str) -> str | None:
    """Why ``secret`` is too weak for production, or None when it passes.

    The reason never quotes the secret, which may be a real key with a flaw.
    """
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        return f"is {size} bytes; production needs at least {MIN_SECRET_BYTES}"
    if (placeholder := _PLACEHOLDER.search(secret)) is not None:
        return f"looks like a placeholder ({placeholder.group(0).lower()!r})"
    if (period := _repeating_period(secret)) is not None:
        return "is one character repeated" if period == 1 else (
            f"repeats one piece of {period} characters"
        )
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT_CHARACTERS:
        return f"uses only {distinct} different characters"
    if _runs_in_sequence(secret):
        return "runs through characters in order (like abcd or 1234)"
    bits = variety_bits(secret)
    if bits < MIN_VARIETY_BITS:
        return f"has too little variety (about {bits:.0f} bits; needs {MIN_VARIETY_BITS})"
    return None


def variety_bits(secret: str) -> float:
    """Length times the Shannon entropy of the secret's own character frequencies: an
    upper bound on its randomness that is low for text with few, repeated characters."""
    counts = Counter(secret)
    length = len(secret)
    per_character = -sum(n / length * math.log2(n / length) for n in counts.values())
    return per_character * length


def _repeating_period(secret: str) -> int | None:
    """The length of the piece ``secret`` repeats (``abcabcab`` → 3), if it is one."""
    for period in range(1, len(secret) // 2 + 1):
        if all(secret[i] == secret[i - period] for i in range(period, len(secret))):
            return period
    return None


def _runs_in_sequence(secret: str) -> bool:
    """Most neighbours are one code point apart (``abcdef``, ``987654``)."""
    steps = [abs(ord(b) - ord(a)) == 1 for a, b in pairwise(secret)]
    return sum(steps) * 2 > len(steps)
