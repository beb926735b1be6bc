"""The ``[logging]`` section of the configuration."""

from __future__ import annotations

from typing import Any, Literal, get_args

from attrs import field, frozen

from installsure.config.values import InvalidSettingError, one_of

# Literal types let the config loader check these per key (and name the key's source);
# the validators below guard direct construction in code.
Level = Literal["debug", "info", "warn", "error", "critical"]
Format = Literal["text", "json"]
LEVELS: tuple[str, ...] = get_args(Level)
FORMATS: tuple[str, ...] = get_args(Format)



def _check_file(_instance: Any, _attribute: Any, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidSettingError(
            "file",
            f"logging.file must be a file path, not {value!r}; leave it unset to log to "
            "stdout (or to twistd's --logfile)",
        )


def _check_retention(_instance: Any, _attribute: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSettingError(
            "retention_days",
            f"logging.retention_days must be a whole number of days >= 1, not {value!r}",
        )


@frozen
class LoggingSettings:
    """The ``[logging]`` section of the configuration."""

    level: Level = field(default="info", validator=one_of("logging", LEVELS))
    format: Format = field(default="text", validator=one_of("logging", FORMATS))
    # None: stdout under ``twistd -n``, or twistd's --logfile when given.
    file: str | None = field(default=None, validator=_check_file)
    # Rotated files older than this many days are deleted.
    retention_days: int = field(default=14, validator=_check_retention)
