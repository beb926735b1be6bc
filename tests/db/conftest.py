"""Database services for tests: built on demand, always stopped afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from installsure.db import Database
from installsure.db import migrate as migrate_module

MakeDatabase = Callable[..., Database]


@pytest.fixture
def make_database() -> Iterator[MakeDatabase]:
    """Build and start Database services; every one is stopped after the test."""
    started: list[Database] = []

    def make(url: str, **options: object) -> Database:
        options.setdefault("auto_migrate", True)
        database = Database(url, **options)  # type: ignore[arg-type]
        database.startService()
        started.append(database)
        return database

    yield make
    for database in started:
        if database.running:
            pytest_twisted.blockon(database.stopService())


@pytest.fixture
def database(make_database: MakeDatabase, database_url: str) -> Database:
    """A started, migrated Database on SQLite and on PostgreSQL."""
    db = make_database(database_url)
    pytest_twisted.blockon(db.started())
    return db


@pytest.fixture
def scratch_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the package's migrations used instead of them, so a test can add
    revisions without touching the source tree."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrate_module.MIGRATIONS_DIR, copy)
    monkeypatch.setattr(migrate_module, "MIGRATIONS_DIR", copy)
    return copy
