"""The errors the database layer raises on purpose.

Each message says what went wrong and what the operator can do about it, because it
ends up on a terminal (``twistd`` refusing to start, ``python -m installsure migrate``)
or in a readiness report, never as a traceback.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of the errors below."""


class DatabaseConfigError(DatabaseError):
    """The database URL or its location is unusable; fixing the configuration helps."""


class DatabaseUnavailable(DatabaseError):  # noqa: N818 - a state, as RedisUnavailable
    """The database did not answer (down, unreachable, locked, shutting down); retry later."""


class MigrationError(DatabaseError):
    """A migration failed and was rolled back; the database is as it was before."""
