"""``load_config``: the layers read in order, structured, checked; every problem at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from installsure.config.checks import check_combinations, check_endpoints
from installsure.config.errors import ConfigError
from installsure.config.layers import Layers, read_environment, read_file, read_options
from installsure.config.schema import Config
from installsure.config.structure import defaults_as_data, structure


def load_config(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, object] | None = None,
) -> Config:
    """Load and validate the configuration; raise ConfigError listing every problem.

    ``options`` maps dotted keys (``"http.listen"``, ``"environment"``) to values from
    the command line; None values are ignored.
    """
    layers = Layers(defaults_as_data())
    if config_file is not None:
        read_file(Path(config_file), layers)
    read_environment(os.environ if environ is None else environ, layers)
    read_options(options or {}, layers)
    check_endpoints(layers)
    config = structure(layers)
    if config is not None:
        # Also with refused values (at their defaults then): every problem in one report.
        check_combinations(config, layers)
    if config is None or layers.problems:
        raise ConfigError(layers.problems)
    return config
