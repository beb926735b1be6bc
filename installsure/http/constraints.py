"""What the attrs validators of a field demand, said twice from one reading.

The OpenAPI document shows a field's validators as JSON Schema keywords (``minimum``,
``maxLength``, ``enum``, ``pattern``, ...), and a request that breaks one hears a sentence
in the client's terms ("must be at least 1") instead of attrs' message, which names the
Python attribute (``'per_page' must be >= 1: 0``). Both come from :func:`rules`, so the
document cannot promise something the validator refuses.

attrs' own validators (``ge``/``gt``/``le``/``lt``, ``min_len``/``max_len``, ``in_``,
``matches_re``, ``optional``, ``deep_iterable`` and lists of them) are understood. A
validator of your own may carry a ``json_schema`` mapping to document itself; its
error message is shown as it is, so write it for clients.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from attrs import frozen, validators

# The classes behind attrs' validator factories, found from the factories themselves.
_NUMBER: type[Any] = type(validators.ge(0))
_MAX_LEN: type[Any] = type(validators.max_len(1))
_MIN_LEN: type[Any] = type(validators.min_len(1))
_IN: type[Any] = type(validators.in_((0,)))
_MATCHES: type[Any] = type(validators.matches_re("x"))
_AND: type[Any] = type(validators.and_(validators.ge(0), validators.le(1)))
_OPTIONAL: type[Any] = type(validators.optional(validators.ge(0)))
_DEEP_ITERABLE: type[Any] = type(validators.deep_iterable(validators.ge(0)))

_NUMBER_KEYWORD = {
    ">=": "minimum",
    ">": "exclusiveMinimum",
    "<=": "maximum",
    "<": "exclusiveMaximum",
}
_NUMBER_TEXT = {
    ">=": "must be at least {}",
    ">": "must be more than {}",
    "<=": "must be at most {}",
    "<": "must be less than {}",
}
# Length keywords and sentences by the JSON type they apply to.
_LENGTH = {
    "string": ("Length", "must be {} {} character{} long"),
    "array": ("Items", "must have {} {} item{}"),
    "object": ("Properties", "must have {} {} entr{}"),
}


@frozen
class Rule:
    """One demand on a value: its schema keywords and the sentence when it is broken."""

    validator: Any
    keywords: Mapping[str, Any]
    #: ``None``: show the validator's own message.
    text: str | None
    #: The value may also be None (the rule sat inside ``optional``).
    nullable: bool = False


def _plural(kind: str | None, count: int) -> str:
    if kind == "object":
        return "y" if count == 1 else "ies"
    return "" if count == 1 else "s"


def _json_kind(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    for option in schema.get("anyOf", ()):
        if isinstance(option, Mapping) and option.get("type") not in (None, "null"):
            return str(option["type"])
    return None


def _anchored(pattern: re.Pattern[str], match_func: Any) -> str:
    text = pattern.pattern
    if match_func == pattern.fullmatch:
        return f"^(?:{text})$"
    if match_func == pattern.match:
        return f"^(?:{text})"
    return text


def _leaf(validator: Any, kind: str | None, nullable: bool) -> Rule:
    if isinstance(validator, _NUMBER):
        op, bound = validator.compare_op, validator.bound
        return Rule(validator, {_NUMBER_KEYWORD[op]: bound}, _NUMBER_TEXT[op].format(bound),
                    nullable)
    if isinstance(validator, _MAX_LEN | _MIN_LEN):
        most = isinstance(validator, _MAX_LEN)
        size = validator.max_length if most else validator.min_length
        suffix, sentence = _LENGTH.get(kind or "string", _LENGTH["string"])
        keyword = ("max" if most else "min") + suffix
        return Rule(validator, {keyword: size},
                    sentence.format("at most" if most else "at least", size,
                                    _plural(kind, size)), nullable)
    if isinstance(validator, _IN) and isinstance(validator.options, list | tuple | set | frozenset):
        options = list(validator.options)
        text = ", ".join(str(o) for o in options)
        return Rule(validator, {"enum": [*options, None] if nullable else options},
                    f"must be one of {text}", nullable)
    if isinstance(validator, _MATCHES):
        pattern = _anchored(validator.pattern, validator.match_func)
        return Rule(validator, {"pattern": pattern}, f"must match the pattern {pattern}",
                    nullable)
    keywords = getattr(validator, "json_schema", None)
    return Rule(validator, dict(keywords) if isinstance(keywords, Mapping) else {}, None,
                nullable)


def rules(validator: Any, schema: Mapping[str, Any], nullable: bool = False) -> Iterator[Rule]:
    """The rules of ``validator`` on a value whose schema is ``schema``, in order."""
    if validator is None:
        return
    if isinstance(validator, list | tuple):
        for each in validator:
            yield from rules(each, schema, nullable)
    elif isinstance(validator, _AND):
        for each in validator._validators:  # attrs keeps the parts here
            yield from rules(each, schema, nullable)
    elif isinstance(validator, _OPTIONAL):
        yield from rules(validator.validator, schema, nullable=True)
    elif isinstance(validator, _DEEP_ITERABLE):
        # Member rules are documented on the items; see broken_rule for their messages.
        yield from rules(validator.iterable_validator, schema, nullable)
    else:
        yield _leaf(validator, _json_kind(schema), nullable)


def _members(validator: Any) -> Iterator[Any]:
    """Validators of the items of an array (``deep_iterable``) within ``validator``."""
    if isinstance(validator, list | tuple):
        for each in validator:
            yield from _members(each)
    elif isinstance(validator, _AND):
        for each in validator._validators:
            yield from _members(each)
    elif isinstance(validator, _OPTIONAL):
        yield from _members(validator.validator)
    elif isinstance(validator, _DEEP_ITERABLE):
        yield validator.member_validator


def schema_keywords(validator: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema keywords for a value with ``schema`` checked by ``validator``."""
    out: dict[str, Any] = {}
    for rule in rules(validator, schema):
        for keyword, value in rule.keywords.items():
            out[keyword] = _tighter(keyword, out.get(keyword), value)
    members = list(_members(validator))
    if members and isinstance(schema.get("items"), Mapping):
        item_schema = dict(schema["items"])
        for member in members:
            item_schema.update(schema_keywords(member, item_schema))
        out["items"] = item_schema
    return out


def _tighter(keyword: str, old: Any, new: Any) -> Any:
    if old is None:
        return new
    if keyword in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
        return max(old, new)
    if keyword in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
        return min(old, new)
    return new


def merge(schema: dict[str, Any], keywords: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with ``keywords`` added, keeping the tighter of two bounds."""
    out = dict(schema)
    for keyword, value in keywords.items():
        out[keyword] = _tighter(keyword, out.get(keyword), value)
    return out


def _fails(validator: Any, attribute: Any, value: Any) -> str | None:
    """The message of ``validator`` on ``value``, or ``None`` when it passes (or cannot
    run without the instance, e.g. a rule comparing two fields)."""
    try:
        validator(None, attribute, value)
    except (ValueError, TypeError) as e:
        return str(e.args[0]) if e.args and isinstance(e.args[0], str) else "is not valid"
    except Exception:  # needs the instance; construction reports it
        return None
    return None


def broken_rule(
    validator: Any, attribute: Any, value: Any
) -> tuple[tuple[str | int, ...], str] | None:
    """Where inside ``value`` (``()`` for itself, ``(2,)`` for its third item) the first
    rule of ``validator`` it breaks is, and the sentence that says so."""
    if validator is None:
        return None
    if isinstance(validator, (list, tuple, _AND)):
        parts = validator if isinstance(validator, list | tuple) else validator._validators
        for each in parts:
            found = broken_rule(each, attribute, value)
            if found is not None:
                return found
        return None
    if isinstance(validator, _OPTIONAL):
        return None if value is None else broken_rule(validator.validator, attribute, value)
    if isinstance(validator, _DEEP_ITERABLE):
        found = broken_rule(validator.iterable_validator, attribute, value)
        if found is not None:
            return found
        for index, item in enumerate(value):
            inner = broken_rule(validator.member_validator, attribute, item)
            if inner is not None:
                return (index, *inner[0]), inner[1]
        return None
    message = _fails(validator, attribute, value)
    if message is None:
        return None
    kind = "array" if isinstance(value, list | tuple | set | frozenset) else (
        "object" if isinstance(value, Mapping) else "string")
    rule = _leaf(validator, kind, nullable=False)
    return (), rule.text or message
