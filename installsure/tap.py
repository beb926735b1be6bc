"""``twistd installsure``: command-line options and the service tree built from a Config.

The tree starts in this order and stops in reverse (DESIGN.md "The process"):
embedded Redis, Redis client, database, job workers, HTTP listeners, drain.
"""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.python import usage

from installsure import __version__
from installsure.config import DEFAULT_LISTEN, Config, ConfigError, load_config, prepare_data_dir


class Options(usage.Options):
    """Options of ``twistd installsure``; each overrides the config file and environment."""

    synopsis = "[options]"
    longdesc = (
        "Runs the InstallSure server: HTTP API and background jobs. "
        "Settings come from defaults < --config TOML file < INSTALLSURE_* environment "
        "variables < these options; etc/installsure.toml documents every key."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (every key: etc/installsure.toml)."],
        ["data-dir", "d", None,
         "Directory for the SQLite database, files, embedded Redis and generated secrets "
         "[default: ./data]."],
        ["role", "r", None,
         "What this process runs: all, api (HTTP) or worker (jobs) "
         "[default: all]."],
        ["environment", "e", None, "development, production or test [default: development]."],
        ["redis-url", None, None,
         "redis://host:6379/0, rediss://... or unix:///path.sock "
         "[default: an embedded redis-server in the data directory]."],
        ["database-url", None, None,
         "sqlite:///path.db or postgresql://user@host/db "
         "[default: SQLite in the data directory]."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Twisted endpoint string to serve HTTP on; repeatable
        [default: tcp:8000:interface=127.0.0.1]."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"installsure {__version__}")
        sys.exit(0)

    def overrides(self) -> dict[str, object]:
        """The options as dotted config keys, for the last config layer."""
        return {
            "data_dir": self["data-dir"],
            "role": self["role"],
            "environment": self["environment"],
            "redis.url": self["redis-url"],
            "database.url": self["database-url"],
            "http.listen": list(self["listen"]) or None,
        }


def load_from_options(options: Options) -> Config:
    """The validated config, or SystemExit with every problem listed (no traceback)."""
    try:
        config = load_config(config_file=options["config"], options=options.overrides())
        return prepare_data_dir(config)
    except ConfigError as exc:
        raise SystemExit(exc.report()) from None


def makeService(options: Options) -> IService:
    config = load_from_options(options)
    from installsure.logs import LogFileError
    from installsure.service import build_service

    try:
        # The heap is frozen in the server's own process only (see installsure.heap).
        return build_service(config, options, freeze_heap=True)
    except LogFileError as exc:
        raise SystemExit(f"installsure: {exc}") from None


__all__ = ["DEFAULT_LISTEN", "Options", "makeService"]
