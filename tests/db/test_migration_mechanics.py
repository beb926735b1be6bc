"""How later migrations will behave: SQLite batch ALTERs, foreign keys, failures."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from installsure.db import (
    DatabaseConfigError,
    MigrationError,
    current_revision,
    head_revision,
    parse_database_url,
    upgrade,
)
from installsure.db.engine import create_engine_for

#: The newest migration the package ships; test migrations are numbered 9001 onwards
#: and follow it.
PACKAGE_HEAD = head_revision()


def add_migration(directory: Path, revision: str, down: str, upgrade_body: str) -> None:
    """Write a migration file into a scratch migrations directory."""
    body = textwrap.indent(textwrap.dedent(upgrade_body).strip(), "    ")
    source = "\n".join(
        [
            f'"""Test migration {revision}."""',
            "import sqlalchemy as sa",
            "from alembic import op",
            "",
            f"revision = {revision!r}",
            f"down_revision = {down!r}",
            "branch_labels = None",
            "depends_on = None",
            "",
            "",
            "def upgrade():",
            body,
            "",
            "",
            "def downgrade():",
            "    pass",
            "",
        ]
    )
    (directory / "versions" / f"{revision}_test.py").write_text(source)


PARENT_AND_CHILD = """
op.create_table(
    "parent",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
)
op.create_table(
    "child",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "parent_id", sa.Integer, sa.ForeignKey("parent.id", ondelete="CASCADE"), nullable=False
    ),
)
op.execute("INSERT INTO parent (id, name) VALUES (1, 'p')")
op.execute("INSERT INTO child (id, parent_id) VALUES (10, 1), (11, 1)")
"""

FAILING_SQL = 'op.execute("SELECT * FROM no_such_table")'

ORPHAN = 'op.execute("INSERT INTO child (id, parent_id) VALUES (12, 99)")'

ALTER_PARENT = """
with op.batch_alter_table("parent") as batch:
    batch.alter_column("name", existing_type=sa.Text, nullable=True)
    batch.add_column(sa.Column("note", sa.Text, nullable=True))
"""


def scalar(url: str, sql: str) -> object:
    engine = create_engine_for(parse_database_url(url), pool_size=1)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(sql).scalar()
    finally:
        engine.dispose()


def test_batch_alter_keeps_rows_that_reference_the_table(
    scratch_migrations: Path, database_url: str
) -> None:
    """An ALTER that SQLite can only do by copying the table (batch mode) neither
    cascades deletes into referencing rows nor breaks their references."""
    add_migration(scratch_migrations, "9001", PACKAGE_HEAD, PARENT_AND_CHILD)
    add_migration(scratch_migrations, "9002", "9001", ALTER_PARENT)
    result = upgrade(database_url)
    assert result.after == "9002"
    assert scalar(database_url, "SELECT count(*) FROM child") == 2
    assert scalar(database_url, "SELECT count(*) FROM parent WHERE note IS NULL") == 1


def test_foreign_keys_are_enforced_again_after_a_migration(
    scratch_migrations: Path, tmp_path: Path
) -> None:
    """Switching enforcement off for a SQLite migration does not leak into the pooled
    connection used afterwards."""
    add_migration(scratch_migrations, "9001", PACKAGE_HEAD, PARENT_AND_CHILD)
    url = parse_database_url(f"sqlite:///{tmp_path / 'db.sqlite'}")
    engine = create_engine_for(url, pool_size=1)
    try:
        from installsure.db.migrate import upgrade_engine

        upgrade_engine(engine, url)
        with engine.connect() as connection:  # the same (only) pooled connection
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_migration_leaving_dangling_references_is_rolled_back(
    scratch_migrations: Path, tmp_path: Path
) -> None:
    """With enforcement off during the migration, a final foreign_key_check still
    catches orphans: the whole upgrade is rolled back with a clear message."""
    add_migration(
        scratch_migrations,
        "9001",
        PACKAGE_HEAD,
        "\n".join([PARENT_AND_CHILD, ORPHAN]),
    )
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with pytest.raises(MigrationError, match=r"1 rows whose foreign keys point nowhere"):
        upgrade(url)
    assert current_revision(url) is None


def test_failing_migration_is_rolled_back_entirely(
    scratch_migrations: Path, database_url: str
) -> None:
    """A migration whose SQL fails leaves the database exactly as before (one
    transaction, DDL included) and says which upgrade failed."""
    add_migration(scratch_migrations, "9001", PACKAGE_HEAD, FAILING_SQL)
    upgrade(database_url, PACKAGE_HEAD)
    expected = rf"from {PACKAGE_HEAD} towards head failed and was rolled back"
    with pytest.raises(MigrationError, match=expected):
        upgrade(database_url)
    assert current_revision(database_url) == PACKAGE_HEAD


def test_failed_first_migration_leaves_no_tables(
    scratch_migrations: Path, database_url: str
) -> None:
    """Even the very first upgrade is atomic: a failure leaves no half-created schema."""
    add_migration(scratch_migrations, "9001", PACKAGE_HEAD, FAILING_SQL)
    with pytest.raises(MigrationError):
        upgrade(database_url)
    assert current_revision(database_url) is None
    engine = create_engine_for(parse_database_url(database_url), pool_size=1)
    try:
        from sqlalchemy import inspect

        assert "app_meta" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_head_follows_the_migrations_directory(scratch_migrations: Path) -> None:
    """head_revision() is read from the migration files, not hard-coded."""
    assert head_revision() == PACKAGE_HEAD
    add_migration(scratch_migrations, "9001", PACKAGE_HEAD, "pass")
    assert head_revision() == "9001"


def test_branching_migrations_are_reported(scratch_migrations: Path, tmp_path: Path) -> None:
    """Two migrations claiming the same parent (a merge mistake) give a clear error."""
    add_migration(scratch_migrations, "9001", PACKAGE_HEAD, "pass")
    add_migration(scratch_migrations, "9002", PACKAGE_HEAD, "pass")
    with pytest.raises(DatabaseConfigError, match="migration failed"):
        upgrade(f"sqlite:///{tmp_path / 'db.sqlite'}")
