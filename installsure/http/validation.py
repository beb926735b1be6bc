"""Turn JSON bodies and query strings into attrs instances, and attrs instances into JSON.

Field names are camelCase on the wire and snake_case in Python. Structuring is strict
(``"false"`` is not a boolean, ``1.5`` is not an integer, ``"ab"`` is not a list,
integers fit in 64 bits) and reports EVERY bad field at once as
:class:`~installsure.http.errors.FieldError` entries, named as the client sent them,
including the failures of attrs validators (in the words of
:mod:`~installsure.http.constraints`), so a client fixes its request in one round trip.
Bodies are decoded by :mod:`~installsure.http.jsonbody` first.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.cols import is_any_set, is_mapping, is_sequence
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from installsure.http.constraints import broken_rule
from installsure.http.errors import FieldError, validation_error
from installsure.http.jsonbody import (
    BODY,
    MAX_DETAILS,
    body_error,
    field_path,
    missing_body,
    parse_json,
)

__all__ = [
    "FieldValueError",
    "camel",
    "missing_body",
    "parse_json",
    "structure_body",
    "structure_query",
    "unstructure",
]

T = TypeVar("T")

_CAMEL_BOUNDARY = re.compile(r"_([a-z0-9])")


@cache
def camel(name: str) -> str:
    """``start_date`` -> ``startDate`` (leading underscores are kept off the wire)."""
    return _CAMEL_BOUNDARY.sub(lambda m: m.group(1).upper(), name.lstrip("_"))


class FieldValueError(ValueError):
    """Raise from ``__attrs_post_init__`` to blame a named field (camelCase on the wire).

    E.g. ``raise FieldValueError("endDate", "must not be before startDate")``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _BrokenRuleError(ValueError):
    """A validator's rule, broken at ``path`` inside the field (``()``: the field itself)."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# -- strict primitives --------------------------------------------------------------

#: Integers are 64-bit signed everywhere (database columns, Redis, other clients).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_INT_RANGE = f"must be an integer from {INT_MIN} to {INT_MAX}"
_QUERY_INT = re.compile(r"-?[0-9]+", re.ASCII)
# The JSON number grammar: what clients and the schema mean by a number.
_QUERY_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _json_str(value: object, _t: object) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    return value


def _in_range(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(_INT_RANGE)
    return value


def _json_int(value: object, _t: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return _in_range(int(value))
        raise TypeError("must be an integer")
    return _in_range(value)


def _json_float(value: object, _t: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("must be a number")
    return float(value)


def _json_bool(value: object, _t: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _query_int(value: object, _t: object) -> int:
    if isinstance(value, str) and _QUERY_INT.fullmatch(value):
        # More digits than any 64-bit value has are out of range, whatever they say.
        return _in_range(int(value) if len(value) <= 21 else INT_MAX + 1)
    raise TypeError("must be an integer")


def _query_float(value: object, _t: object) -> float:
    if isinstance(value, str) and len(value) <= 100 and _QUERY_NUMBER.fullmatch(value):
        result = float(value)
        if math.isfinite(result):
            return result
    raise TypeError("must be a number")


def _query_bool(value: object, _t: object) -> bool:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise TypeError("must be true or false")


def _datetime(value: object, _t: object) -> dt.datetime:
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


def _date(value: object, _t: object) -> dt.date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise TypeError("must be a date as YYYY-MM-DD")


def _uuid(value: object, _t: object) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise TypeError("must be a UUID")


def _format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def _literal_hook(t: Any) -> Callable[[object, object], object]:
    allowed = get_args(t)
    text = ", ".join(json.dumps(a) if not isinstance(a, enum.Enum) else a.value for a in allowed)

    def structure(value: object, _t: object) -> object:
        for candidate in allowed:
            if value == candidate and type(value) is type(candidate):
                return candidate
        raise ValueError(f"must be one of {text}")

    return structure


def _enum_hook(t: type[enum.Enum]) -> Callable[[object, object], object]:
    values = [m.value for m in t]
    text = ", ".join(str(v) for v in values)

    def structure(value: object, _t: object) -> object:
        try:
            return t(value)
        except ValueError:
            raise ValueError(f"must be one of {text}") from None

    return structure


def _is_literal(t: Any) -> bool:
    return get_origin(t) is Literal


def _is_enum(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, enum.Enum)


def _attrs_hook_factory(converter: Converter, forbid_extra: bool) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        fields = attrs.fields(attrs.resolve_types(cls))
        renames = {a.name: override(rename=camel(a.name)) for a in fields}
        base = make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=forbid_extra, **renames  # type: ignore[arg-type]
        )
        checked = [a for a in fields if a.validator is not None]

        def validator_errors(value: Mapping[str, Any], skip: set[str]) -> list[Exception]:
            # attrs stops at the first failing validator; run each field's on its own so
            # the client hears about every one of them.
            errors: list[Exception] = []
            for a in checked:
                name = camel(a.name)
                if a.name in skip or name not in value:
                    continue
                try:
                    field_value = converter.structure(value[name], a.type)
                except Exception:  # noqa: S112 - its type error is reported already
                    continue
                broken = broken_rule(a.validator, a, field_value)
                if broken is not None:
                    e = _BrokenRuleError(*broken)
                    e.__notes__ = [AttributeValidationNote("validator", a.name, a.type)]
                    errors.append(e)
            return errors

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError("must be an object")
            try:
                return base(value, t)
            except ClassValidationError as failed:
                typed, untyped = failed.group_exceptions()
                blamed = {note.name for _e, note in typed}
                errors: list[Exception] = [e for e, _note in typed]
                found = validator_errors(value, blamed)
                errors += found
                for e in untyped:
                    # Construction errors (the first failing validator again, or
                    # __attrs_post_init__) only matter when nothing more precise is known.
                    if isinstance(e, ForbiddenExtraKeysError) or not found:
                        errors.append(e)
                raise ClassValidationError(
                    f"While structuring {cls.__qualname__}", errors, cls
                ) from None

        return structure

    return factory


def _container_hook_factory(converter: Converter) -> Callable[[Any], Any]:
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


def _is_container(t: Any) -> bool:
    return t not in (str, bytes) and (is_sequence(t) or is_any_set(t) or is_mapping(t))


def _make_converter(*, query: bool, forbid_extra: bool) -> Converter:
    conv = Converter(detailed_validation=True)
    if query:
        conv.register_structure_hook(int, _query_int)
        conv.register_structure_hook(float, _query_float)
        conv.register_structure_hook(bool, _query_bool)
    else:
        conv.register_structure_hook(int, _json_int)
        conv.register_structure_hook(float, _json_float)
        conv.register_structure_hook(bool, _json_bool)
    conv.register_structure_hook(str, _json_str)
    conv.register_structure_hook(dt.datetime, _datetime)
    conv.register_structure_hook(dt.date, _date)
    conv.register_structure_hook(uuid.UUID, _uuid)
    conv.register_structure_hook_factory(_is_literal, _literal_hook)
    conv.register_structure_hook_factory(_is_enum, _enum_hook)
    conv.register_structure_hook_factory(_is_container, _container_hook_factory(conv))
    conv.register_structure_hook_factory(
        attrs.has, _attrs_hook_factory(conv, forbid_extra)
    )
    return conv


def _make_unstructurer() -> Converter:
    conv = Converter()
    conv.register_unstructure_hook(dt.datetime, _format_datetime)
    conv.register_unstructure_hook(dt.date, dt.date.isoformat)
    conv.register_unstructure_hook(uuid.UUID, str)

    def factory(cls: Any) -> Callable[[Any], Any]:
        renames = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
        return make_dict_unstructure_fn(cls, conv, **renames)  # type: ignore[arg-type]

    conv.register_unstructure_hook_factory(attrs.has, factory)
    return conv


_BODY = _make_converter(query=False, forbid_extra=False)
_BODY_STRICT = _make_converter(query=False, forbid_extra=True)
_QUERY = _make_converter(query=True, forbid_extra=False)
_OUT = _make_unstructurer()


# -- error collection ---------------------------------------------------------------


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "is required"
    if isinstance(exc, FieldValueError):
        return exc.message
    if exc.args and isinstance(exc.args[0], str) and exc.args[0]:
        return exc.args[0]
    return "is not valid"


def _collect(exc: BaseException, path: list[str | int], out: list[FieldError]) -> None:
    if isinstance(exc, ForbiddenExtraKeysError):
        for name in sorted(exc.extra_fields):
            out.append(FieldError(field_path([*path, name]), "is not a known field"))
        return
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            _collect(sub, [*path, camel(note.name)], out)
        for sub in without:
            _collect(sub, path, out)
        return
    if isinstance(exc, IterableValidationError):
        iter_notes, iter_without = exc.group_exceptions()
        for sub, inote in iter_notes:
            _collect(sub, [*path, inote.index], out)
        for sub in iter_without:
            _collect(sub, path, out)
        return
    if isinstance(exc, BaseValidationError | ExceptionGroup):
        for sub in exc.exceptions:
            _collect(sub, path, out)
        return
    if isinstance(exc, FieldValueError):
        path = [*path, exc.field]
    elif isinstance(exc, _BrokenRuleError):
        path = [*path, *exc.path]
    out.append(FieldError(field_path(path), _message(exc)))


def _structure(converter: Converter, data: object, cls: type[T], root: str) -> T:
    try:
        return converter.structure(data, cls)
    except (BaseValidationError, ValueError, TypeError, KeyError) as exc:
        errors: list[FieldError] = []
        _collect(exc, [root] if root else [], errors)
        # A body of a million bad items gets a readable answer, not a million lines.
        raise validation_error(errors[:MAX_DETAILS]) from None


# -- public surface -----------------------------------------------------------------


def structure_body(data: object, cls: type[T], *, forbid_extra: bool = False) -> T:
    """Structure a decoded JSON body into ``cls`` or raise 400 listing every bad field."""
    if not isinstance(data, dict):
        raise body_error(
            "The request body must be a JSON object.", [FieldError(BODY, "must be an object")]
        )
    return _structure(_BODY_STRICT if forbid_extra else _BODY, data, cls, "")


def _is_multi(t: Any) -> bool:
    return get_origin(t) in (list, tuple, Sequence, frozenset, set, typing.Sequence)


@cache
def _query_fields(cls: type[Any]) -> tuple[tuple[bytes, str, bool], ...]:
    resolved = attrs.resolve_types(cls)
    return tuple(
        (camel(a.name).encode("ascii"), camel(a.name), _is_multi(a.type))
        for a in attrs.fields(resolved)
    )


def structure_query(args: Mapping[bytes, Sequence[bytes]], cls: type[T]) -> T:
    """Structure ``request.args`` into ``cls`` (camelCase names, strings parsed strictly)."""
    data: dict[str, object] = {}
    bad: list[FieldError] = []
    for raw_name, name, multi in _query_fields(cls):  # type: ignore[arg-type]
        values = args.get(raw_name)
        if not values:
            continue
        try:
            decoded = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            bad.append(FieldError(name, "is not valid UTF-8"))
            continue
        data[name] = decoded if multi else decoded[-1]
    if bad:
        raise validation_error(bad)
    return _structure(_QUERY, data, cls, "")


def unstructure(value: object) -> Any:
    """attrs instances (and containers of them) to JSON-ready values with camelCase keys."""
    return _OUT.unstructure(value)
