"""Alembic migrations of the InstallSure schema (configured in ``installsure.db.migrate``)."""
