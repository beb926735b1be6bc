"""Fixtures of the project tests: a migrated database on SQLite and PostgreSQL, and
the project routes served over it."""

from tests.db.conftest import database, make_database
from tests.projects.api import api

__all__ = ["api", "database", "make_database"]
