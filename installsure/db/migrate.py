"""Alembic, configured from code: upgrade a database and ask for its revision.

There is no ``alembic.ini`` at run time; ``script_location`` points into this package,
so migrations work from an installed wheel as well as from a checkout. Everything here
blocks; the Database service calls it on its thread pool, the CLI calls it directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from attrs import frozen
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from installsure.db.engine import create_engine_for
from installsure.db.errors import DatabaseConfigError, DatabaseError, MigrationError
from installsure.db.failures import is_unavailable, unavailable
from installsure.db.urls import DatabaseURL, parse_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant both processes agree on; two nodes starting at once must not both migrate.
_PG_MIGRATION_LOCK_KEY = 0x1A57_5E7E


@frozen
class MigrationResult:
    """Revisions before and after an upgrade (None: an empty database)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(
    url: DatabaseURL | None = None,
    *,
    connection: Connection | None = None,
    stdout: TextIO | None = None,
    sql_output: TextIO | None = None,
) -> Config:
    """An Alembic Config for our migrations; ``env.py`` reads the attributes set here.

    ``stdout`` gets Alembic's messages, ``sql_output`` the SQL of offline (--sql) runs.
    """
    cfg = Config(stdout=stdout or sys.stdout, output_buffer=sql_output)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as attributes, not as the ``sqlalchemy.url`` option: ConfigParser would
    # interpolate a '%' in a password.
    cfg.attributes["database_url"] = url
    cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of InstallSure knows."""
    heads = script_directory().get_heads()
    if len(heads) != 1:
        # Two migrations naming the same parent: a merge of two branches' work.
        raise DatabaseConfigError(
            f"the migrations have {len(heads)} heads ({', '.join(sorted(heads)) or 'none'}) "
            f"instead of one; renumber the newer migration so it follows the other"
        )
    return heads[0]


def lock_for_migration(connection: Connection) -> None:
    """Serialize concurrent migrators (several nodes starting at once).

    PostgreSQL: a transaction-scoped advisory lock. SQLite: the connection already
    holds the write lock from ``BEGIN IMMEDIATE`` (see ``engine._sqlite_begin``).
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
        )


def revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_engine(engine: Engine, url: DatabaseURL, revision: str = "head") -> MigrationResult:
    """Upgrade the database behind ``engine`` to ``revision`` in one transaction."""
    with (
        translate_errors(url),
        engine.connect() as connection,
        _sqlite_foreign_keys_deferred(connection),
        connection.begin(),
    ):
        lock_for_migration(connection)
        before = revision_of(connection)
        check_known_revision(before)
        try:
            command.upgrade(alembic_config(url, connection=connection), revision)
        except DBAPIError as e:
            if is_unavailable(e):
                raise
            raise MigrationError(
                f"upgrading {url.redacted} from {before or '(empty)'} towards {revision} "
                f"failed and was rolled back: {_first_line(e)}"
            ) from e
        _check_foreign_keys(connection)
        return MigrationResult(before, revision_of(connection))


@contextmanager
def _sqlite_foreign_keys_deferred(connection: Connection) -> Iterator[None]:
    """Switch SQLite's foreign key enforcement off around a migration.

    Batch mode changes a table by copying it and dropping the original; with
    enforcement on, that DROP deletes the rows referencing it (ON DELETE CASCADE) or
    fails. SQLite's documented procedure for schema changes is: enforcement off, change,
    ``PRAGMA foreign_key_check``, commit, enforcement on. The PRAGMA is a no-op inside a
    transaction, so it goes straight to the driver connection, which is in autocommit
    mode between our transactions (see ``engine._sqlite_connect``).
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    if raw is None:  # pragma: no cover - a checked-out connection always has one
        raise RuntimeError("no driver connection to switch foreign keys on")
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        try:
            raw.execute("PRAGMA foreign_keys=ON")
        except Exception:
            # Never hand a connection without enforcement back to the pool.
            connection.invalidate()
            raise


def _check_foreign_keys(connection: Connection) -> None:
    """On SQLite, refuse to commit a migration that left dangling references."""
    if connection.dialect.name != "sqlite":
        return
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if problems:
        shown = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in problems[:5])
        raise MigrationError(
            f"the migration left {len(problems)} rows whose foreign keys point nowhere "
            f"({shown}); it was rolled back. Fix the migration's data step"
        )


def _first_line(error: DBAPIError) -> str:
    lines = str(error.orig).strip().splitlines()
    return lines[0] if lines else type(error.orig).__name__


def current_revision_engine(engine: Engine, url: DatabaseURL) -> str | None:
    with translate_errors(url), engine.connect() as connection:
        return revision_of(connection)


def upgrade(url: str, revision: str = "head", *, busy_timeout: float = 5.0) -> MigrationResult:
    """Upgrade the database at ``url`` (a raw URL, as configured) to ``revision``."""
    parsed = parse_database_url(url)
    engine = create_engine_for(parsed, pool_size=1, busy_timeout=busy_timeout)
    try:
        return upgrade_engine(engine, parsed, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None when no migration ran yet."""
    parsed = parse_database_url(url)
    engine = create_engine_for(parsed, pool_size=1)
    try:
        return current_revision_engine(engine, parsed)
    finally:
        engine.dispose()


def upgrade_sql(url: str, revision: str, output: TextIO) -> None:
    """Write the SQL of an upgrade to ``output`` instead of running it (for a DBA).

    ``revision`` is a target (from an empty database) or ``from:to``.
    """
    parsed = parse_database_url(url)
    with translate_errors(parsed):
        command.upgrade(
            alembic_config(parsed, stdout=output, sql_output=output), revision, sql=True
        )


@contextmanager
def translate_errors(url: DatabaseURL) -> Iterator[None]:
    """Turn driver and Alembic failures into our errors with a message saying what to do."""
    try:
        yield
    except DatabaseError:
        raise
    except CommandError as e:
        known = ", ".join(sorted(script_directory().get_heads()))
        raise DatabaseConfigError(
            f"migration failed: {e}; `python -m installsure db current` shows where the "
            f"database is, and this version knows revisions up to {known}"
        ) from None
    except DBAPIError as e:
        if is_unavailable(e):
            raise unavailable(url, e) from None
        raise


def check_known_revision(revision: str | None) -> None:
    if revision is None:
        return
    try:
        known = script_directory().get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise DatabaseConfigError(
            f"the database is at schema revision {revision!r}, which this version of "
            f"InstallSure does not know (it knows up to {head_revision()}); it was "
            f"probably migrated by a newer version: run that version, or restore a backup"
        )
