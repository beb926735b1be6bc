"""The database: SQLAlchemy Core tables, Alembic migrations, and the ``Database`` service.

Every query runs on the service's own thread pool and comes back as a Deferred::

    def count_keys(connection: Connection) -> int:
        return connection.execute(select(func.count()).select_from(app_meta)).scalar_one()

    n = yield database.run(count_keys)

SQLite (``sqlite:///path``, the default ``<data-dir>/installsure.db``) and PostgreSQL
(``postgresql://...``, psycopg 3) run the same code.
"""

from __future__ import annotations

from installsure.db.errors import (
    DatabaseConfigError,
    DatabaseError,
    DatabaseUnavailable,
    MigrationError,
)
from installsure.db.migrate import (
    MigrationResult,
    current_revision,
    head_revision,
    upgrade,
)
from installsure.db.service import Database
from installsure.db.tables import UtcDateTime, app_meta, metadata
from installsure.db.urls import DatabaseURL, parse_database_url, sqlite_url_for

__all__ = [
    "Database",
    "DatabaseConfigError",
    "DatabaseError",
    "DatabaseURL",
    "DatabaseUnavailable",
    "MigrationError",
    "MigrationResult",
    "UtcDateTime",
    "app_meta",
    "current_revision",
    "head_revision",
    "metadata",
    "parse_database_url",
    "sqlite_url_for",
    "upgrade",
]
