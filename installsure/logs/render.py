"""Events as text lines or JSON objects, with secret-named fields redacted."""

from __future__ import annotations

import json
import math
import re
import string
import time
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from twisted.logger import LogEvent, formatEvent
from twisted.python.failure import Failure
from twisted.python.reflect import qual

REDACTED = "[redacted]"


# --------------------------------------------------------------------------- redaction

_SECRET_NAME = re.compile(
    r"passw(or)?d|passphrase|token|secret|authori[sz]ation|api[-_]?key|cookie|credential",
    re.IGNORECASE,
)


@lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def _redacted(value: Any, depth: int = 0) -> Any:
    """``value`` with secret-named keys of nested mappings replaced (copies only if needed)."""
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and _is_secret(key)
            else _redacted(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value):
        return [_redacted(item, depth + 1) for item in value]
    return value


def redact_query(path: str) -> str:
    """Hide secret-named query parameters (``?token=...``) in a request path."""
    head, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and _is_secret(name) else part)
    return head + "?" + "&".join(parts)


# --------------------------------------------------------------------------- rendering

# Keys of events that came through twisted.python.log (log.msg/log.err); their content
# is already in log_text / log_failure / log_system.
_LEGACY_KEYS = frozenset(
    {"message", "time", "system", "isError", "format", "why", "failure", "printed", "logLevel"}
)
_JSON_RESERVED = frozenset({"time", "level", "namespace", "message", "system"})
_JSON_FAILURE_KEYS = frozenset({"exception", "traceback"})


def _is_legacy(event: LogEvent) -> bool:
    return "isError" in event and "message" in event


def _failure_of(event: LogEvent) -> Any:
    failure = event.get("log_failure")
    if failure is None and _is_legacy(event) and isinstance(event.get("failure"), Failure):
        return event["failure"]  # log.err(): twisted keeps it under the old key only
    return failure


_INTERNAL, _SECRET, _PLAIN = 1, 2, 3
_key_kinds: dict[str, int] = {}
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _key_kind(key: str) -> int:
    kind = _key_kinds.get(key)
    if kind is None:
        kind = _INTERNAL if key.startswith("log_") else _SECRET if _is_secret(key) else _PLAIN
        if len(_key_kinds) < 10_000:  # field names are few; bound it anyway
            _key_kinds[key] = kind
    return kind


def _fields(event: LogEvent) -> tuple[dict[str, Any], bool]:
    """The structured fields of an event (no ``log_*`` internals, secrets redacted), and
    whether anything was redacted."""
    legacy = _is_legacy(event)
    fields: dict[str, Any] = {}
    changed = False
    known = _key_kinds
    for key, value in event.items():
        kind = known.get(key) or _key_kind(key)
        if kind == _INTERNAL or (legacy and key in _LEGACY_KEYS):
            continue
        if kind == _SECRET:
            fields[key] = REDACTED
            changed = True
        elif type(value) in _SCALARS:
            fields[key] = value
        else:
            fields[key] = clean = _redacted(value)
            changed = changed or clean is not value
    return fields, changed


def _message(event: LogEvent, fields: Mapping[str, Any], redacted: bool) -> str:
    if _is_legacy(event) and isinstance(event.get("failure"), Failure):
        # The legacy text repeats the traceback, which we write on its own.
        return str(event.get("why") or "Unhandled Error")
    # With something redacted, format from the redacted values, so a secret named in the
    # format string does not reach the message either.
    values = {**event, **fields} if redacted else event
    log_format = event.get("log_format")
    if type(log_format) is str and "()" not in log_format and "log_flattened" not in event:
        # str.format_map runs in C; twisted's formatter (which adds "{call()}") in Python,
        # and this is every request's access line.
        try:
            return log_format.format_map(values)
        except Exception:  # twisted's formatter explains what is wrong with the event
            return formatEvent(values)
    return formatEvent(values)


_second_text: tuple[int, str] = (-1, "")
_milli_text: tuple[int, str] = (-1, "")


def _timestamp(when: float | None) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-11-30T03:45:47.123Z``."""
    # One-entry caches: strftime per line is costly, and under load many lines share a
    # millisecond. Each cache is one tuple, replaced whole, so threads never see half.
    global _second_text, _milli_text  # noqa: PLW0603
    if when is None:
        when = time.time()
    milli = int(when * 1000)
    cached = _milli_text
    if cached[0] == milli:
        return cached[1]
    second, fraction = divmod(milli, 1000)
    whole = _second_text
    if whole[0] != second:
        whole = _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    text = f"{whole[1]}.{fraction:03d}Z"
    _milli_text = (milli, text)
    return text


def _level_name(event: LogEvent) -> str:
    name = getattr(event.get("log_level"), "name", None)
    return name if isinstance(name, str) else "-"


def _failure_parts(failure: Any) -> tuple[str, str]:
    if not isinstance(failure, Failure) or failure.type is None:
        return "unknown", repr(failure)
    name = qual(failure.type).removeprefix("builtins.")
    try:
        return f"{name}: {failure.getErrorMessage()}", failure.getTraceback()
    except Exception:  # a broken __str__ on the exception must not lose the event
        return name, "(traceback could not be formatted)"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Slow path: make anything ``json.dumps`` can write (odd keys, NaN, cycles)."""
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 6:
        return _json_default(value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item, depth + 1) for item in value]
    return _jsonable(_json_default(value), depth + 1)


_ENCODER = json.JSONEncoder(default=_json_default, allow_nan=False)


def event_as_json(event: LogEvent) -> str:
    """One JSON object (no newline) for an event; never raises."""
    fields, redacted = _fields(event)
    record: dict[str, Any] = {
        "time": _timestamp(event.get("log_time")),
        "level": _level_name(event),
        "namespace": event.get("log_namespace", "-"),
        "message": _message(event, fields, redacted),
    }
    system = event.get("log_system")
    if system is not None and system != "-":
        record["system"] = system
    failure = _failure_of(event)
    for key, value in fields.items():
        clash = key in _JSON_RESERVED or (failure is not None and key in _JSON_FAILURE_KEYS)
        record[f"field_{key}" if clash else key] = value
    if failure is not None:
        record["exception"], record["traceback"] = _failure_parts(failure)
    try:
        return _ENCODER.encode(record)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(record))


_FORMATTER = string.Formatter()


@lru_cache(maxsize=2048)
def _referenced(log_format: str) -> frozenset[str]:
    """Field names a format string interpolates (``{user.id}`` → ``user``)."""
    try:
        names = {
            re.split(r"[.\[(]", name, maxsplit=1)[0]
            for _text, name, _spec, _conv in _FORMATTER.parse(log_format)
            if name
        }
    except ValueError:
        return frozenset()
    return frozenset(names)


# Printable characters that still need quoting (other whitespace is not printable).
_QUOTE_WORTHY = frozenset(" =\"'")


def _is_bare(value: str) -> bool:
    """Can be written unquoted: no whitespace, quotes or ``=`` (C-speed checks; this runs
    for every field of every access line)."""
    return bool(value) and value.isprintable() and _QUOTE_WORTHY.isdisjoint(value)


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if _is_bare(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | int | float) or value is None:
        return str(value)
    try:
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(_json_default(value))


@lru_cache(maxsize=1024)
def _plain_plan(
    log_format: str, keys: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """For events of this format and these keys: the fields the message shows and the
    fields to append after it, or None when the event needs the general path (a
    secret-looking or legacy key, a failure, a system of its own)."""
    if "()" in log_format or "{}" in log_format or "log_failure" in keys:
        return None
    if "isError" in keys or "log_flattened" in keys or "log_system" in keys:
        return None
    shown = _referenced(log_format)
    in_message: list[str] = []
    extra: list[str] = []
    for key in keys:
        kind = _key_kind(key)
        if kind == _SECRET:
            return None
        if kind == _PLAIN:
            (in_message if key in shown else extra).append(key)
    return tuple(in_message), tuple(extra)


def _plain_text(
    event: LogEvent, log_format: str, in_message: tuple[str, ...], extra: tuple[str, ...]
) -> str | None:
    """The common case (every request's access line) without building a field dict:
    same output as the general path, or None to fall back to it."""
    if in_message and not _SCALARS.issuperset(map(type, map(event.__getitem__, in_message))):
        # A list or mapping in the message may hold a secret the general path redacts.
        return None
    try:
        text = log_format.format_map(event)
    except Exception:  # the general path explains a bad format
        return None
    if extra:
        values = list(map(event.__getitem__, extra))
        if not _SCALARS.issuperset(map(type, values)):
            return None
        texts = list(map(str, values))
        joined = "x".join(texts)
        if not (all(texts) and joined.isprintable() and _QUOTE_WORTHY.isdisjoint(joined)):
            # Some value needs quoting. When none does (the usual case, every access
            # line) the texts are already right: a scalar that is not a string always
            # prints bare, and this skips a Python call per field.
            texts = list(map(_text_value, values))
        pairs = " ".join(map("{}={}".format, extra, texts))
        text = f"{text} {pairs}" if text else pairs
    if "\n" in text:
        return None
    return f"{_timestamp(event.get('log_time'))} [{_system(event)}] {text.rstrip()}"


@lru_cache(maxsize=256)
def _system_text(namespace: Any, level: Any) -> str:
    name = getattr(level, "name", None)
    return f"{namespace}#{name if isinstance(name, str) else '-'}"


def _system(event: LogEvent) -> str:
    """``namespace#level`` for events without a ``log_system`` of their own."""
    try:
        return _system_text(event.get("log_namespace", "-"), event.get("log_level"))
    except TypeError:  # an unhashable namespace or level: whatever it is, say it
        return f"{event.get('log_namespace', '-')}#{_level_name(event)}"


def event_as_text(event: LogEvent) -> str:
    """One text line (plus an indented traceback for failures); never raises."""
    log_format = event.get("log_format")
    if type(log_format) is str:
        plan = _plain_plan(log_format, tuple(event))
        if plan is not None:
            line = _plain_text(event, log_format, *plan)
            if line is not None:
                return line
    return _general_text(event)


def _general_text(event: LogEvent) -> str:
    fields, redacted = _fields(event)
    text = _message(event, fields, redacted)
    log_format = event.get("log_format")
    shown = _referenced(log_format) if isinstance(log_format, str) else frozenset()
    extra = " ".join(
        f"{key}={_text_value(value)}" for key, value in fields.items() if key not in shown
    )
    if extra:
        text = f"{text} {extra}" if text else extra
    failure = _failure_of(event)
    if failure is not None:
        text = f"{text}\n{_failure_parts(failure)[1]}"
    system = event.get("log_system")
    if system is None or system == "-":
        system = f"{event.get('log_namespace', '-')}#{_level_name(event)}"
    # Continuation lines are indented so a reader can tell where each event starts.
    text = text.rstrip().replace("\n", "\n\t")
    return f"{_timestamp(event.get('log_time'))} [{system}] {text}"
