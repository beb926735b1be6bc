"""Every setting of the server, and how it is loaded.

Layers, each overriding the one before: defaults < TOML file (``--config``) < environment
(``INSTALLSURE_<SECTION>_<KEY>``, plus the old system's names) < command-line options.

Loading collects *every* problem before giving up and names, for each, the key, where the
value came from and what is expected, so an operator fixes a config in one round trip.

* ``schema``: ``Config``, gathering each part's settings class (``http.settings``,
  ``jobs.settings``, ``redis.settings``, ...), which lives beside the part;
* ``values``: the value types settings use (``Seconds``, ``RedisUrl``, ...) and their
  strict parsers;
* ``layers``: the file, the environment (with the old names) and the options, each value
  with its source; ``structure``: cattrs turning them into a ``Config``; ``checks``:
  rules across settings; ``loading``: ``load_config``;
* ``datadir``: ``prepare_data_dir``; ``doc``: renders ``etc/installsure.toml``
  (``python -m installsure.config > etc/installsure.toml``).

The names below are imported on first use: each part's settings module imports
``installsure.config.values``, and ``Config`` imports those settings modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from installsure._lazy import lazy_attributes

if TYPE_CHECKING:
    from installsure.config.datadir import prepare_data_dir
    from installsure.config.errors import ConfigError, ConfigProblem
    from installsure.config.loading import load_config
    from installsure.config.schema import DEFAULT_LISTEN, Config

_WHERE = {
    "DEFAULT_LISTEN": "schema",
    "Config": "schema",
    "ConfigError": "errors",
    "ConfigProblem": "errors",
    "load_config": "loading",
    "prepare_data_dir": "datadir",
}

__all__ = [
    "DEFAULT_LISTEN",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "load_config",
    "prepare_data_dir",
]


__getattr__ = lazy_attributes(__name__, _WHERE, globals())
