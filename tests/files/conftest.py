"""Fixtures of the files tests: a database (SQLite and PostgreSQL), moto's S3 server
and the served API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from installsure.db import Database
from tests.db.conftest import database, make_database  # noqa: F401 - fixtures
from tests.files.world import FilesWorld, serve_files
from tests.fixtures.moto import moto_endpoint  # noqa: F401 - a fixture


@pytest.fixture
def world(database: Database, tmp_path: Path, wire: str) -> Iterator[FilesWorld]:  # noqa: F811
    """The files API on a real socket, once per database and per HTTP wire."""
    yield from serve_files(database, tmp_path, wire=wire)


@pytest.fixture
def fast_world(database: Database, tmp_path: Path) -> Iterator[FilesWorld]:  # noqa: F811
    """The files API on the fast wire only (for what does not depend on the wire)."""
    yield from serve_files(database, tmp_path, wire="fast")
