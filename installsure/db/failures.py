"""Telling "the database is not usable right now" apart from bugs, and saying so clearly."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from installsure.db.errors import DatabaseUnavailable
from installsure.db.urls import DatabaseURL

# sqlite3 raises OperationalError for bad SQL too ("no such table"), so for SQLite only
# these messages mean the database itself is unusable.
_SQLITE_UNAVAILABLE = (
    "locked",
    "busy",
    "unable to open",
    "disk i/o error",
    "readonly database",
    "database or disk is full",
)


def is_unavailable(error: DBAPIError) -> bool:
    """True when ``error`` says the database cannot be used now (as opposed to bad SQL)."""
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.Error):
        message = str(error.orig).lower()
        return any(fragment in message for fragment in _SQLITE_UNAVAILABLE)
    # psycopg: connection failures and server shutdowns, lock and statement timeouts
    # are OperationalError; SQL mistakes are ProgrammingError / IntegrityError etc.
    return isinstance(error, OperationalError | InterfaceError)


def is_sqlite_locked(error: BaseException) -> bool:
    """True for SQLite's "database is locked/busy" after busy_timeout ran out."""
    orig = getattr(error, "orig", error)
    return isinstance(orig, sqlite3.OperationalError) and (
        "locked" in str(orig) or "busy" in str(orig)
    )


def unavailable(url: DatabaseURL, error: BaseException) -> DatabaseUnavailable:
    """DatabaseUnavailable for ``error`` at ``url``, with the likely fixes."""
    lines = str(getattr(error, "orig", error)).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    if url.dialect == "sqlite":
        if is_sqlite_locked(error):
            return DatabaseUnavailable(
                f"the SQLite database {url.redacted} stayed locked by another writer for "
                f"longer than busy_timeout ({reason}); retry, or raise database.busy_timeout"
            )
        return DatabaseUnavailable(
            f"cannot use the SQLite database {url.redacted} ({reason}); check that the file "
            f"and its directory exist, are writable and that the disk is not full"
        )
    return DatabaseUnavailable(
        f"cannot reach the PostgreSQL database {url.redacted} ({reason}); check that the "
        f"server is running and that the URL's host, port, user, password and database "
        f"are right"
    )
