"""The shared table definitions: naming convention and the UTC timestamp type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import pytest_twisted
from sqlalchemy import Column, Connection, Integer, Table, insert, select, update
from sqlalchemy.exc import StatementError

from installsure.db import Database, UtcDateTime, app_meta, metadata
from tests.db.helpers import within


def test_constraints_get_conventional_names() -> None:
    """Constraints are named by the convention, so migrations can refer to them."""
    assert app_meta.primary_key.name == "pk_app_meta"
    probe = Table("probe_names", metadata, Column("id", Integer, primary_key=True))
    try:
        assert probe.primary_key.name == "pk_probe_names"
    finally:
        metadata.remove(probe)


@pytest_twisted.ensureDeferred
async def test_server_default_timestamp_reads_back_as_aware_utc(database: Database) -> None:
    """updated_at filled by the database comes back timezone-aware in UTC, on SQLite
    (which stores naive text) as on PostgreSQL."""

    def read(connection: Connection) -> datetime:
        return connection.execute(
            select(app_meta.c.updated_at).where(app_meta.c.key == "instance_id")
        ).scalar_one()

    stamp = await within(database.run(read))
    assert stamp.tzinfo is not None
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)


@pytest_twisted.ensureDeferred
async def test_aware_datetimes_round_trip_as_utc(database: Database) -> None:
    """A time written in any zone is read back as the same instant, in UTC."""
    written = datetime(2026, 3, 1, 9, 30, 15, tzinfo=timezone(timedelta(hours=2)))

    def write_and_read(connection: Connection) -> datetime:
        connection.execute(
            update(app_meta).where(app_meta.c.key == "instance_id").values(updated_at=written)
        )
        return connection.execute(
            select(app_meta.c.updated_at).where(app_meta.c.key == "instance_id")
        ).scalar_one()

    read = await within(database.run(write_and_read))
    assert read == written
    assert read.tzinfo is not None
    assert read.utcoffset() == timedelta(0)
    assert read.hour == 7


@pytest_twisted.ensureDeferred
async def test_naive_datetimes_are_refused(database: Database) -> None:
    """A naive datetime could be local time stored as UTC; it is refused with a message."""

    def write_naive(connection: Connection) -> None:
        connection.execute(
            insert(app_meta).values(key="naive", value="x", updated_at=datetime(2026, 1, 1))
        )

    with pytest.raises(StatementError, match="timezone-aware"):
        await within(database.run(write_naive))


def test_utc_type_is_cacheable() -> None:
    """The type declares itself safe for SQLAlchemy's statement cache."""
    assert UtcDateTime.cache_ok is True
