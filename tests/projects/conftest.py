"""Fixtures of the project tests: a migrated database on SQLite and PostgreSQL."""

from tests.db.conftest import database, make_database

__all__ = ["database", "make_database"]
