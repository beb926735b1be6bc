"""Turn JSON bodies and query strings into attrs instances, and attrs instances into JSON.

Field names are camelCase on the wire and snake_case in Python. Structuring is strict
(the hooks of :mod:`~installsure.http.wiretypes`) and reports EVERY bad field at once as
:class:`~installsure.http.errors.FieldError` entries, named as the client sent them,
including the failures of attrs validators (in the words of
:mod:`~installsure.http.constraints`), so a client fixes its request in one round trip.
Bodies are decoded by :mod:`~installsure.http.jsonbody` first.
"""

from __future__ import annotations

import datetime as dt
import re
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar, get_origin

import attrs
from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
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
from installsure.http.wiretypes import (
    container_hook_factory,
    enum_hook,
    format_datetime,
    is_container,
    is_enum,
    is_literal,
    json_bool,
    json_float,
    json_int,
    json_str,
    literal_hook,
    query_bool,
    query_float,
    query_int,
    structure_date,
    structure_datetime,
    structure_uuid,
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

    ``__attrs_post_init__`` only runs when every field passed its own validator, so its
    error is missing from a report that lists other bad fields. A rule across fields
    that must be reported with the rest goes into a static method
    ``__validate_fields__(values)`` of the class instead: it is given the fields that
    are valid on their own (by attribute name; a missing one is left out when the body
    had other errors) and yields a FieldValueError for each rule broken.
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


def _attrs_hook_factory(converter: Converter, forbid_extra: bool) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        fields = attrs.fields(attrs.resolve_types(cls))
        renames = {a.name: override(rename=camel(a.name)) for a in fields}
        base = make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=forbid_extra, **renames  # type: ignore[arg-type]
        )
        cross_check = getattr(cls, "__validate_fields__", None)

        def field_errors(
            value: Mapping[str, Any], skip: set[str]
        ) -> tuple[list[Exception], dict[str, Any]]:
            # attrs stops at the first failing validator; run each field's on its own so
            # the client hears about every one of them. The fields that are fine on
            # their own are kept for the rules across fields.
            errors: list[Exception] = []
            good: dict[str, Any] = {}
            for a in fields:
                name = camel(a.name)
                if a.name in skip or name not in value:
                    continue
                try:
                    field_value = converter.structure(value[name], a.type)
                except Exception:  # noqa: S112 - its type error is reported already
                    continue
                broken = (broken_rule(a.validator, a, field_value)
                          if a.validator is not None else None)
                if broken is not None:
                    e = _BrokenRuleError(*broken)
                    e.__notes__ = [AttributeValidationNote("validator", a.name, a.type)]
                    errors.append(e)
                else:
                    good[a.name] = field_value
            return errors, good

        def cross_errors(values: Mapping[str, Any]) -> list[Exception]:
            if cross_check is None:
                return []
            return list(cross_check(values))

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError("must be an object")
            try:
                instance = base(value, t)
            except ClassValidationError as failed:
                typed, untyped = failed.group_exceptions()
                blamed = {note.name for _e, note in typed}
                errors: list[Exception] = [e for e, _note in typed]
                found, good = field_errors(value, blamed)
                errors += found
                for e in untyped:
                    # Construction errors (the first failing validator again, or
                    # __attrs_post_init__) only matter when nothing more precise is known.
                    if isinstance(e, ForbiddenExtraKeysError) or not found:
                        errors.append(e)
                errors += cross_errors(good)
                raise ClassValidationError(
                    f"While structuring {cls.__qualname__}", errors, cls
                ) from None
            broken = cross_errors({a.name: getattr(instance, a.name) for a in fields})
            if broken:
                raise ClassValidationError(f"While structuring {cls.__qualname__}", broken, cls)
            return instance

        return structure

    return factory


def _make_converter(*, query: bool, forbid_extra: bool) -> Converter:
    conv = Converter(detailed_validation=True)
    if query:
        conv.register_structure_hook(int, query_int)
        conv.register_structure_hook(float, query_float)
        conv.register_structure_hook(bool, query_bool)
    else:
        conv.register_structure_hook(int, json_int)
        conv.register_structure_hook(float, json_float)
        conv.register_structure_hook(bool, json_bool)
    conv.register_structure_hook(str, json_str)
    conv.register_structure_hook(dt.datetime, structure_datetime)
    conv.register_structure_hook(dt.date, structure_date)
    conv.register_structure_hook(uuid.UUID, structure_uuid)
    conv.register_structure_hook_factory(is_literal, literal_hook)
    conv.register_structure_hook_factory(is_enum, enum_hook)
    conv.register_structure_hook_factory(is_container, container_hook_factory(conv))
    conv.register_structure_hook_factory(
        attrs.has, _attrs_hook_factory(conv, forbid_extra)
    )
    return conv


def _make_unstructurer() -> Converter:
    conv = Converter()
    conv.register_unstructure_hook(dt.datetime, format_datetime)
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
