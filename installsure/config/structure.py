"""Structuring the layered values into a ``Config`` with cattrs, collecting every problem.

Each value type of ``installsure.config.values`` gets its strict parser, ``Literal``
types list their choices, and an empty string clears an optional setting. cattrs'
detailed validation names each bad value's path; ``structure`` turns those into
``ConfigProblem``s with the source each value came from.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)

from installsure.config.errors import ConfigProblem
from installsure.config.layers import ENTRY_FIELDS, Layers, unwrap_optional
from installsure.config.schema import Config
from installsure.config.values import (
    DatabaseUrl,
    HttpUrl,
    InvalidSettingError,
    RedisUrl,
    Seconds,
    parse_bool,
    parse_database_url,
    parse_float,
    parse_http_url,
    parse_int,
    parse_redis_url,
    parse_seconds,
    parse_str,
    parse_string_tuple,
)


def _is_literal(declared: Any) -> bool:
    return get_origin(declared) is Literal


def _ignoring_type(parse: Callable[[object], object]) -> Callable[[object, Any], object]:
    return lambda value, _declared: parse(value)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    hooks: dict[Any, Any] = {
        bool: parse_bool,
        int: parse_int,
        float: parse_float,
        str: parse_str,
        Seconds: parse_seconds,
        RedisUrl: parse_redis_url,
        DatabaseUrl: parse_database_url,
        HttpUrl: parse_http_url,
    }
    for declared, parse in hooks.items():
        converter.register_structure_hook(declared, _ignoring_type(parse))
    converter.register_structure_hook_func(
        lambda declared: declared == tuple[str, ...],
        lambda value, _t: parse_string_tuple(value),
    )

    def structure_literal(value: object, declared: Any) -> object:
        allowed = get_args(declared)
        if value in allowed:
            return value
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"expected one of {choices}, got {value!r}")

    converter.register_structure_hook_func(_is_literal, structure_literal)

    def structure_optional(value: object, declared: Any) -> object:
        # An empty environment variable clears an optional setting.
        if value is None or value == "":
            return None
        return converter.structure(value, unwrap_optional(declared))

    converter.register_structure_hook_func(
        lambda declared: unwrap_optional(declared) is not declared, structure_optional
    )
    return converter


converter = _make_converter()


def defaults_as_data() -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(Config())
    return data


_MAX_STRUCTURING_ATTEMPTS = 100
_ABSENT = object()


def structure(layers: Layers) -> Config | None:
    """The layered values as a Config, every problem in ``layers.problems``.

    When some values were refused, the Config has their defaults in their place, so the
    rules across settings can still be checked for the rest (None if even that fails).

    cattrs reports every value of a wrong type at once, but a settings class's own
    validators stop at the first value they refuse, and do not run at all while another
    value of the section has a wrong type. So every reported value is put back to its
    default (unknown keys are dropped) and the values structured again, until nothing
    more is found: one run of the server then lists every bad value, not one per try.
    """
    values = copy.deepcopy(layers.values)
    defaults = defaults_as_data()
    for _attempt in range(_MAX_STRUCTURING_ATTEMPTS):
        try:
            config: Config = converter.structure(values, Config)
        except (BaseValidationError, ForbiddenExtraKeysError) as exc:
            reported: list[tuple[str, ...]] = []
            _collect(exc, (), layers, reported)
            # Every reported value goes back to its default, not just the first.
            restored = [_restore_default(values, defaults, path) for path in reported]
            if not any(restored):
                break
        else:
            # The same type error is met again on every attempt: report it once.
            layers.problems[:] = list(dict.fromkeys(layers.problems))
            return config
    layers.problems[:] = list(dict.fromkeys(layers.problems))
    return None


def _restore_default(
    values: dict[str, Any], defaults: dict[str, Any], path: tuple[str, ...]
) -> bool:
    """Put the default back at ``path``; False when there is none or it is already there."""
    node: Any = values
    default: Any = defaults
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        default = default.get(part) if isinstance(default, dict) else None
    if not isinstance(node, dict):
        return False
    value = default.get(path[-1], _ABSENT) if isinstance(default, dict) else _ABSENT
    if value is _ABSENT:
        # No default (e.g. a queue only the configuration names): let the class's own
        # field default apply.
        return node.pop(path[-1], _ABSENT) is not _ABSENT
    if node.get(path[-1], _ABSENT) == value:
        return False
    node[path[-1]] = copy.deepcopy(value)
    return True


def _collect(
    exc: BaseException,
    path: tuple[str, ...],
    layers: Layers,
    reported: list[tuple[str, ...]] | None = None,
) -> None:
    """Turn cattrs' nested validation errors into one ConfigProblem per bad value;
    ``reported`` gets the path of each."""
    if isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    sub_path = (*path, note.name)
                elif isinstance(note, IterableValidationNote):
                    sub_path = (*path, str(note.index))
            _collect(sub, sub_path, layers, reported)
        return
    if isinstance(exc, ForbiddenExtraKeysError):
        for extra in sorted(exc.extra_fields):
            _report(layers, reported, (*path, extra),
                    "unknown setting; check the spelling against etc/installsure.toml")
        return
    message = str(exc) if isinstance(exc, ValueError | TypeError) else repr(exc)
    if isinstance(exc, InvalidSettingError):
        # A validator of the section's class: report it under the setting's own key.
        path = (*path, exc.name)
        # The message names the key itself; the problem line names it already.
        for prefix in (display_key(path), exc.name):
            if message.startswith(prefix):
                message = message.removeprefix(prefix).lstrip(": ") or message
                break
    _report(layers, reported, path, message)


def _report(
    layers: Layers, reported: list[tuple[str, ...]] | None, path: tuple[str, ...], message: str
) -> None:
    layers.problems.append(ConfigProblem(display_key(path), layers.source_of(path), message))
    if reported is not None:
        reported.append(path)


def display_key(path: tuple[str, ...]) -> str:
    """The dotted key as users write it: ``queues.email-send.attempts``, without the
    field that holds a section's named entries."""
    if len(path) > 1 and ENTRY_FIELDS.get(path[:1]) == path[1]:
        path = (path[0], *path[2:])
    return ".".join(path) or "(top)"
