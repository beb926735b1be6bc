"""Value types for settings that need stricter parsing than ``int`` or ``str``.

They are ``NewType``s so settings classes stay plain attrs classes that mypy understands,
while the config loader registers one strict parser for each (see
``installsure.config.structure``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, NewType

Seconds = NewType("Seconds", float)
"""A duration: a number of seconds, or a string such as ``"500ms"``, ``"30s"``, ``"15m"``."""

RedisUrl = NewType("RedisUrl", str)
"""``redis://``, ``rediss://`` or ``unix://`` URL."""

DatabaseUrl = NewType("DatabaseUrl", str)
"""``sqlite:///path`` or ``postgresql://user@host/db``."""

HttpUrl = NewType("HttpUrl", str)
"""``http://`` or ``https://`` URL of an outside service."""

Environment = Literal["development", "production", "test"]
Role = Literal["all", "api", "worker"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class InvalidSettingError(ValueError):
    """Raised by a settings class's validator: ``name`` is the setting's own key, so the
    config loader can say where the bad value came from (file, variable or option)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def one_of(section: str, choices: tuple[str, ...]) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: the value is one of ``choices``, else an
    :class:`InvalidSettingError` naming ``<section>.<key>`` and the choices."""

    def check(_instance: object, attribute: Any, value: object) -> None:
        if value not in choices:
            raise InvalidSettingError(
                attribute.name,
                f"{section}.{attribute.name} must be one of {', '.join(choices)}, "
                f"not {value!r}",
            )

    return check


def parse_bool(value: object) -> bool:
    """Only unambiguous spellings: the old system read ``"false"`` as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected a boolean (true/false, yes/no, on/off, 1/0), got {value!r}")


def parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got the boolean {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def parse_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def parse_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def parse_seconds(value: object) -> Seconds:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(
            f"expected a duration such as 30, \"500ms\", \"30s\", \"15m\", \"2h\", got {value!r}"
        )
    if seconds < 0:
        raise ValueError(f"expected a duration of zero or more, got {value!r}")
    return Seconds(seconds)


def parse_port(value: object) -> int:
    """A TCP port, 1–65535 (the old system's ``PORT``)."""
    port = parse_int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a TCP port between 1 and 65535, got {value!r}")
    return port


def _parse_url(value: object, schemes: tuple[str, ...], example: str) -> str:
    text = parse_str(value).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in schemes or not rest:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(f"expected a URL starting with {allowed} (e.g. {example}), got {value!r}")
    return text


def parse_redis_url(value: object) -> RedisUrl:
    return RedisUrl(
        _parse_url(value, ("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0")
    )


def parse_database_url(value: object) -> DatabaseUrl:
    text = parse_str(value).strip()
    scheme = text.partition("://")[0].lower()
    # SQLAlchemy spells drivers as "dialect+driver"; accept ours with or without them.
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres") or "://" not in text:
        # Only the scheme is repeated: the rest may hold a password.
        shown = f"a {scheme}:// URL" if "://" in text else "a value that is not a URL"
        raise ValueError(
            "expected sqlite:///path/to/file.db or postgresql://user:password@host:5432/db, "
            f"got {shown}"
        )
    return DatabaseUrl(text)


def parse_http_url(value: object) -> HttpUrl:
    return HttpUrl(_parse_url(value, ("http", "https"), "https://example.com"))


def parse_string_tuple(value: object) -> tuple[str, ...]:
    """A TOML array of strings, or a comma-separated string (environment variables)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            raise ValueError(f"expected a list of strings, got {value!r}")
        return tuple(value)
    raise ValueError(f"expected a list of strings or a comma-separated string, got {value!r}")
