"""The schema, as SQLAlchemy Core tables on one shared ``metadata``.

Every table of InstallSure is declared here (later issues add users, projects, files)
and created only by an Alembic migration in ``installsure/db/migrations/versions``:
change a table here, then add a migration that does the same.

The naming convention gives every constraint and index a deterministic name, so later
migrations can drop or alter them by name on PostgreSQL and SQLite alike (SQLite's
batch mode recreates tables and needs the names to carry constraints over).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Dialect, MetaData, Table, Text, TypeDecorator, func

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on both dialects.

    PostgreSQL stores ``timestamp with time zone``; SQLite has no such type and hands
    back naive values (``CURRENT_TIMESTAMP`` is UTC there). Naive input is refused so a
    local time can never be stored as if it were UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"UtcDateTime needs a timezone-aware datetime, got {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text, e.g. from a server default
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]

app_meta = Table(
    "app_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column(
        "updated_at",
        UtcDateTime(),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    comment=(
        "Facts about this installation, one row per key. Written by migration 0001: "
        "'schema_installed_at' (ISO 8601 UTC time the schema was first created) and "
        "'instance_id' (a random UUID naming this database, e.g. for logs and metrics). "
        "Other parts may add keys; values are text."
    ),
)
"""Installation facts, key -> text value. Keys written so far:

``schema_installed_at``
    ISO 8601 UTC time at which migration 0001 ran, i.e. the database was created.
``instance_id``
    A random UUID that names this database; stable for its lifetime.
"""
