"""Building the SQLAlchemy Engine: one code path for SQLite and PostgreSQL.

The Engine is only ever used from threads (the Database service's pool, the migrate
command), so everything here is synchronous and may block.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from installsure.db.errors import DatabaseConfigError
from installsure.db.urls import DatabaseURL

READONLY_OPTION = "installsure_readonly"
"""Execution option set by ``Database.run(..., readonly=True)``; see ``_sqlite_begin``."""

_PG_CONNECT_TIMEOUT = 10


def create_engine_for(
    url: DatabaseURL,
    *,
    pool_size: int = 5,
    busy_timeout: float = 5.0,
    echo: bool = False,
) -> Engine:
    """An Engine for ``url`` with our per-dialect settings; never connects by itself."""
    if pool_size < 1:
        raise DatabaseConfigError(f"database pool_size must be at least 1, got {pool_size}")
    if busy_timeout < 0:
        raise DatabaseConfigError(
            f"database busy_timeout must be zero or more seconds, got {busy_timeout}"
        )
    if url.dialect == "sqlite":
        return _sqlite_engine(url, pool_size=pool_size, busy_timeout=busy_timeout, echo=echo)
    return _postgres_engine(url, pool_size=pool_size, echo=echo)


def _postgres_engine(url: DatabaseURL, *, pool_size: int, echo: bool) -> Engine:
    try:
        import psycopg  # noqa: F401  (only to give a helpful message when it is missing)
    except ImportError:
        raise DatabaseConfigError(
            "PostgreSQL needs the psycopg 3 driver; install it with "
            "`pip install 'installsure[postgres]'` (or `pip install 'psycopg[binary]'`)"
        ) from None
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.url.query:
        # Without it an unreachable host blocks a pool thread for the TCP timeout (minutes).
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT
    return create_engine(
        url.url,
        echo=echo,
        pool_size=pool_size,
        # The thread pool has pool_size threads, so more connections are never needed;
        # a little overflow covers out-of-pool users such as a concurrent migration.
        max_overflow=2,
        # A server restart or an idle-timeout proxy leaves dead sockets in the pool;
        # testing each checkout turns that into a reconnect instead of a failed request.
        pool_pre_ping=True,
        pool_timeout=30,
        connect_args=connect_args,
    )


def _sqlite_engine(
    url: DatabaseURL, *, pool_size: int, busy_timeout: float, echo: bool
) -> Engine:
    path = url.sqlite_path
    if path is not None:
        prepare_sqlite_location(path)
    # Connections are opened in one pool thread and used in another.
    connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": busy_timeout}
    if url.is_memory:
        # An in-memory database exists only inside its one connection: share that
        # connection (the Database service then runs one query at a time).
        engine = create_engine(
            url.url, echo=echo, poolclass=StaticPool, connect_args=connect_args
        )
    else:
        engine = create_engine(
            url.url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=2,
            connect_args=connect_args,
        )
    busy_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module, which would not BEGIN
        # before SELECT or DDL; ``_sqlite_begin`` issues the BEGIN itself. This is also
        # what lets PRAGMA journal_mode run outside a transaction here.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers do not block the writer nor it them.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            # Safe with WAL (a power cut may lose the last commits, never corrupt).
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        # A plain (deferred) BEGIN that reads and then writes fails at once with
        # "database is locked" when another connection wrote in between, busy_timeout
        # notwithstanding. Taking the write lock up front makes writers queue (bounded by
        # busy_timeout) instead; read-only work keeps the deferred BEGIN and runs
        # concurrently with the writer thanks to WAL.
        if conn.get_execution_options().get(READONLY_OPTION):
            # Straight to sqlite3: a deferred BEGIN takes no lock, so it cannot fail the
            # ways SQLAlchemy's wrapping is for, and reads are the hot path.
            conn.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def prepare_sqlite_location(path: Path) -> None:
    """Create the database's directory and prove we can write there (WAL needs to).

    Raises DatabaseConfigError naming the directory and what to do.
    """
    directory = path.parent
    advice = (
        "make it writable for this user, or point --data-dir / --database-url "
        "somewhere that is"
    )
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise DatabaseConfigError(
            f"cannot put the SQLite database in {str(directory)!r}: {str(existing)!r} is a "
            f"file, not a directory; point --data-dir / --database-url somewhere else"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatabaseConfigError(
            f"cannot create the directory {str(directory)!r} for the SQLite database "
            f"({e.strerror or e}); {advice}"
        ) from None
    if not directory.is_dir():
        raise DatabaseConfigError(
            f"{str(directory)!r} should be the directory of the SQLite database but is "
            f"not a directory; {advice}"
        )
    if path.exists() and not path.is_file():
        raise DatabaseConfigError(
            f"the SQLite database path {str(path)!r} exists but is not a file; "
            f"choose another database URL"
        )
    try:
        # A real write rather than os.access: it also catches read-only mounts and
        # behaves the same for root.
        with tempfile.TemporaryFile(dir=directory, prefix=".installsure-probe-"):
            pass
    except OSError as e:
        raise DatabaseConfigError(
            f"the SQLite database directory {str(directory)!r} is not writable "
            f"({e.strerror or e}); {advice}"
        ) from None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseConfigError(
            f"the SQLite database file {str(path)!r} is not readable and writable by this "
            f"user; fix its permissions or choose another database URL"
        )
