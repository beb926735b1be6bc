"""What a new password must be: long enough, not built from the e-mail address, not common.

The rules, each reported on its own so a client can show them all at once:

* at least ``auth.password_min_length`` characters (10 by default) and at most
  :data:`MAX_LENGTH` (argon2 would hash more, but nobody types it and it costs memory);
* not containing the local part of the account's e-mail address (the part before
  ``@``, when it has at least 3 characters), in any letter case;
* not one of the common passwords shipped with the package
  (``installsure/auth/data/common-passwords.txt``), nor one of them followed only by
  digits and punctuation (``Sunshine2024!``).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

MAX_LENGTH = 256
#: A local part shorter than this ("a@example.com") is not checked: every password
#: containing the letter would be refused.
MIN_CHECKED_LOCAL_PART = 3

_TRAILING_DIGITS_AND_PUNCTUATION = re.compile(r"[\d\W_]+$")


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("installsure.auth").joinpath("data/common-passwords.txt").read_text(
        encoding="utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def password_problems(password: str, email: str, *, min_length: int) -> list[str]:
    """Every rule ``password`` breaks for the account ``email``, as messages for the
    ``password`` field (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters long")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters long")
    folded = password.casefold()
    local_part = email.rpartition("@")[0].casefold()
    if len(local_part) >= MIN_CHECKED_LOCAL_PART and local_part in folded:
        problems.append("must not contain the e-mail address's name part")
    common = common_passwords()
    stem = _TRAILING_DIGITS_AND_PUNCTUATION.sub("", folded)
    if folded in common or stem in common:
        problems.append("is too common: choose one that is not on lists of popular passwords")
    return problems
