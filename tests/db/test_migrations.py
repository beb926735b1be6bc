"""Alembic migrations, run from code: up on both dialects, idempotent, clear failures."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from installsure.db import (
    DatabaseConfigError,
    DatabaseUnavailable,
    app_meta,
    current_revision,
    head_revision,
    parse_database_url,
    upgrade,
)
from installsure.db.engine import create_engine_for
from installsure.db.migrate import MIGRATIONS_DIR, upgrade_sql
from tests.fixtures.redis import free_port


def _app_meta(url: str) -> dict[str, str]:
    engine = create_engine_for(parse_database_url(url), pool_size=1)
    try:
        with engine.connect() as connection:
            return {row.key: row.value for row in connection.execute(select(app_meta))}
    finally:
        engine.dispose()


def test_upgrade_creates_app_meta_and_reaches_head(database_url: str) -> None:
    """An empty database migrates to head: app_meta exists and records the install."""
    result = upgrade(database_url)
    assert result.before is None
    assert result.after == head_revision()
    assert current_revision(database_url) == head_revision()
    facts = _app_meta(database_url)
    assert set(facts) >= {"schema_installed_at", "instance_id"}
    assert len(facts["instance_id"]) == 36


def test_upgrade_twice_changes_nothing(database_url: str) -> None:
    """A second upgrade is a no-op and keeps the instance id of the first."""
    upgrade(database_url)
    first = _app_meta(database_url)
    again = upgrade(database_url)
    assert not again.changed
    assert again.before == again.after == head_revision()
    assert _app_meta(database_url) == first


def test_app_meta_columns_and_constraint_names(database_url: str) -> None:
    """The table has the documented columns and the primary key follows the naming
    convention (later migrations refer to constraints by name)."""
    upgrade(database_url)
    engine = create_engine_for(parse_database_url(database_url), pool_size=1)
    try:
        inspector = inspect(engine)
        columns = {c["name"]: c for c in inspector.get_columns("app_meta")}
        assert set(columns) == {"key", "value", "updated_at"}
        pk = inspector.get_pk_constraint("app_meta")
        assert pk["constrained_columns"] == ["key"]
        if engine.dialect.name == "postgresql":
            assert pk["name"] == "pk_app_meta"
    finally:
        engine.dispose()


def test_current_revision_of_an_empty_database_is_none(database_url: str) -> None:
    """A database no migration ran on reports no revision (rather than failing)."""
    assert current_revision(database_url) is None


def test_migrations_need_no_ini_file_or_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrations are found inside the package, wherever the process runs from."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not list(MIGRATIONS_DIR.glob("*.ini"))
    url = f"sqlite:///{tmp_path / 'db' / 'installsure.db'}"
    assert upgrade(url).after == head_revision()
    assert list(elsewhere.iterdir()) == []


def test_unknown_target_revision_is_a_clear_error(database_url: str) -> None:
    """Asking for a revision that does not exist says so and how to find out more."""
    with pytest.raises(DatabaseConfigError, match=r"Can't locate revision.*db current"):
        upgrade(database_url, "9999")


def test_database_from_a_newer_version_is_refused(database_url: str) -> None:
    """A schema migrated by a newer InstallSure is not touched; the message says why."""
    upgrade(database_url)
    engine = create_engine_for(parse_database_url(database_url), pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9000'"))
    finally:
        engine.dispose()
    with pytest.raises(DatabaseConfigError, match=r"revision '9000'.*newer version"):
        upgrade(database_url)


def test_unreachable_postgres_is_database_unavailable() -> None:
    """A PostgreSQL port nobody listens on fails fast with what to check, not a traceback."""
    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/installsure"
    with pytest.raises(DatabaseUnavailable) as caught:
        upgrade(url)
    message = str(caught.value)
    assert "cannot reach the PostgreSQL database" in message
    assert "server is running" in message
    assert ":pw@" not in message


def test_offline_sql_is_printed_not_run(tmp_path: Path) -> None:
    """--sql mode renders the DDL for review and leaves the database untouched."""
    out = io.StringIO()
    url = f"sqlite:///{tmp_path / 'installsure.db'}"
    upgrade_sql(url, "head", out)
    assert "CREATE TABLE app_meta" in out.getvalue()
    assert "INSERT INTO alembic_version" in out.getvalue()
    assert not (tmp_path / "installsure.db").exists()


def test_offline_sql_for_postgres_needs_no_server() -> None:
    """PostgreSQL DDL can be rendered without a server (a DBA applies it)."""
    out = io.StringIO()
    upgrade_sql(f"postgresql://nobody@127.0.0.1:{free_port()}/x", "head", out)
    assert "TIMESTAMP WITH TIME ZONE" in out.getvalue()
    assert "BEGIN;" in out.getvalue()


@pytest.mark.postgres
def test_concurrent_upgrades_on_postgres_migrate_once(postgres_url: str) -> None:
    """Two nodes starting together both succeed; the advisory lock lets only one migrate."""
    results = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            results.append(upgrade(postgres_url))
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(r.changed for r in results) == [False, True]
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM app_meta")).scalar_one()
    finally:
        engine.dispose()
    assert rows == 2
