"""Strict structure hooks for the values of JSON bodies and query strings.

``"false"`` is not a boolean, ``1.5`` not an integer, ``"ab"`` not a list; integers fit
in 64 bits and query numbers are ASCII JSON numbers. :mod:`installsure.http.validation`
registers these on its converters.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from cattrs import Converter
from cattrs.cols import is_any_set, is_mapping, is_sequence
from cattrs.errors import IterableValidationError, IterableValidationNote

#: Integers are 64-bit signed everywhere (database columns, Redis, other clients).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_INT_RANGE = f"must be an integer from {INT_MIN} to {INT_MAX}"
_QUERY_INT = re.compile(r"-?[0-9]+", re.ASCII)
# The JSON number grammar: what clients and the schema mean by a number.
_QUERY_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)


def json_str(value: object, _t: object) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    return value


def _in_range(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(_INT_RANGE)
    return value


def json_int(value: object, _t: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return _in_range(int(value))
        raise TypeError("must be an integer")
    return _in_range(value)


def json_float(value: object, _t: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("must be a number")
    return float(value)


def json_bool(value: object, _t: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def query_int(value: object, _t: object) -> int:
    if isinstance(value, str) and _QUERY_INT.fullmatch(value):
        # More digits than any 64-bit value has are out of range, whatever they say.
        return _in_range(int(value) if len(value) <= 21 else INT_MAX + 1)
    raise TypeError("must be an integer")


def query_float(value: object, _t: object) -> float:
    if isinstance(value, str) and len(value) <= 100 and _QUERY_NUMBER.fullmatch(value):
        result = float(value)
        if math.isfinite(result):
            return result
    raise TypeError("must be a number")


def query_bool(value: object, _t: object) -> bool:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise TypeError("must be true or false")


def structure_datetime(value: object, _t: object) -> dt.datetime:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                raise ValueError("must include a time zone, e.g. 2024-05-01T12:00:00Z")
            return parsed.astimezone(dt.UTC)
    raise TypeError("must be an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z")


def structure_date(value: object, _t: object) -> dt.date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise TypeError("must be a date as YYYY-MM-DD")


def structure_uuid(value: object, _t: object) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise TypeError("must be a UUID")


def format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def literal_hook(t: Any) -> Callable[[object, object], object]:
    allowed = get_args(t)
    text = ", ".join(json.dumps(a) if not isinstance(a, enum.Enum) else a.value for a in allowed)

    def structure(value: object, _t: object) -> object:
        for candidate in allowed:
            if value == candidate and type(value) is type(candidate):
                return candidate
        raise ValueError(f"must be one of {text}")

    return structure


def enum_hook(t: type[enum.Enum]) -> Callable[[object, object], object]:
    values = [m.value for m in t]
    text = ", ".join(str(v) for v in values)

    def structure(value: object, _t: object) -> object:
        try:
            return t(value)
        except ValueError:
            raise ValueError(f"must be one of {text}") from None

    return structure


def is_literal(t: Any) -> bool:
    return get_origin(t) is Literal


def is_enum(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, enum.Enum)


def container_hook_factory(converter: Converter) -> Callable[[Any], Any]:
    """Arrays for lists, tuples and sets, objects for mappings, and nothing else.

    cattrs would iterate any iterable: ``"ab"`` would become ``["a", "b"]`` and an
    object its keys. Items are structured here so each bad one is named by its index
    (or key) and all are reported together.
    """

    def factory(t: Any) -> Callable[[Any, Any], Any]:
        args = get_args(t)
        if is_mapping(t):
            value_type = args[1] if len(args) == 2 else Any

            def structure_mapping(value: Any, _t: Any) -> Any:
                if not isinstance(value, dict):
                    raise TypeError("must be an object")
                return dict(_each(converter, ((k, v, value_type) for k, v in value.items())))

            return structure_mapping
        origin = get_origin(t) or t
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):

            def structure_fixed(value: Any, _t: Any) -> Any:
                if not isinstance(value, list) or len(value) != len(args):
                    raise TypeError(f"must be an array of {len(args)} items")
                triples = ((i, v, args[i]) for i, v in enumerate(value))
                return tuple(v for _i, v in _each(converter, triples))

            return structure_fixed
        item_type = args[0] if args else Any
        made: Callable[[Any], Any] = list
        if is_any_set(t):
            made = frozenset if origin is frozenset else set
        elif origin is tuple:
            made = tuple

        def structure_items(value: Any, _t: Any) -> Any:
            if not isinstance(value, list):
                raise TypeError("must be an array")
            triples = ((i, v, item_type) for i, v in enumerate(value))
            return made(v for _i, v in _each(converter, triples))

        return structure_items

    return factory


def _each(converter: Converter, triples: Any) -> list[tuple[Any, Any]]:
    """``(key, value)`` pairs, each value structured as its type; every failure reported."""
    done: list[tuple[Any, Any]] = []
    errors: list[Exception] = []
    for key, item, item_type in triples:
        try:
            done.append((key, converter.structure(item, item_type)))
        except Exception as e:  # each bad item is reported with its place
            e.__notes__ = [IterableValidationNote(f"Structuring item {key!r}", key, item_type)]
            errors.append(e)
    if errors:
        raise IterableValidationError("bad items", errors, list)
    return done


def is_container(t: Any) -> bool:
    return t not in (str, bytes) and (is_sequence(t) or is_any_set(t) or is_mapping(t))
