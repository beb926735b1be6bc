"""Alembic environment: runs our migrations on the connection ``migrate.py`` hands over.

Loaded by Alembic, never imported. ``config.attributes`` carries ``database_url`` (a
``DatabaseURL``) and, online, the ``connection`` already inside its transaction.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from installsure.db.engine import create_engine_for
from installsure.db.migrate import lock_for_migration
from installsure.db.tables import metadata
from installsure.db.urls import DatabaseURL, parse_database_url

config = context.config


def _database_url() -> DatabaseURL:
    url = config.attributes.get("database_url")
    if url is not None:
        return url  # type: ignore[no-any-return]
    # Plain `alembic -c some.ini ...` during development.
    return parse_database_url(config.get_main_option("sqlalchemy.url") or "")


def run_offline() -> None:
    url = _database_url()
    context.configure(
        url=url.url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.dialect == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine_for(_database_url(), pool_size=1)
    try:
        with engine.begin() as own:
            lock_for_migration(own)
            _run_on(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
