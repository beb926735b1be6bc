"""Settings of the database (config section ``database``).

Plain values only, so the config loader fills them from TOML and the environment; the
URL is parsed in full (driver, path) by ``installsure.db.urls`` when the service starts.
"""

from __future__ import annotations

from attrs import frozen

from installsure.config.values import DatabaseUrl, Seconds


@frozen
class DatabaseSettings:
    """Which database, and how the service's pool uses it."""

    url: DatabaseUrl | None = None
    """None: SQLite at ``<data_dir>/installsure.db``."""
    auto_migrate: bool | None = None
    """Apply migrations at start. None: yes, except in production."""
    pool_size: int = 5
    busy_timeout: Seconds = Seconds(5.0)
    echo: bool = False
