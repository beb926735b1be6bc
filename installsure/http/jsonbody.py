"""Decode a request body as strict JSON, or say exactly what is wrong with it.

``json.loads`` alone lets some bodies through that break later, far from the request,
as a 500: an integer of 5,000 digits (Python refuses to make it), deep nesting (the
decoder recurses until ``RecursionError``), ``NaN``/``Infinity`` (not JSON, and not
writable back out), a lone surrogate escape such as ``"\\ud800"`` (a ``str`` that cannot
be encoded as UTF-8 again) and a key sent twice (two parsers may each believe a
different one). This decoder refuses all of them with a 400 ``VALIDATION_ERROR`` whose
``details`` name the place, so every body either parses into plain JSON values or is the
client's error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from installsure.http.errors import ApiError, FieldError

#: Deepest nesting of arrays and objects a body may have; API payloads are shallow.
MAX_DEPTH = 64
#: Longest number literal, in characters; 64-bit values and doubles need at most ~25.
MAX_NUMBER_LENGTH = 100
#: At most this many problems are listed; a body with a million bad numbers gets a short answer.
MAX_DETAILS = 50

#: The whole body, in ``details[].field`` (the empty JSON Pointer means the document).
BODY = ""

_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# A \uD800-\uDFFF escape: only then can the decoded text hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def field_path(parts: Sequence[str | int]) -> str:
    """``["tags", 1, "name"]`` -> ``tags[1].name``, as ``details[].field`` spells paths."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else part
    return text


def body_error(message: str, details: Sequence[FieldError]) -> ApiError:
    return ApiError("VALIDATION_ERROR", message, details=details[:MAX_DETAILS])


def missing_body() -> ApiError:
    return body_error(
        "The request needs a JSON body (an object).", [FieldError(BODY, "is required")]
    )


class _Refused:
    """Stands in the decoded tree where a value was refused, until the tree is walked."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class _KeysTwice(dict[str, Any]):
    """An object in which some keys appeared more than once."""

    __slots__ = ("twice",)

    def __init__(self, pairs: list[tuple[str, Any]], twice: list[str]) -> None:
        super().__init__(pairs)
        self.twice = twice


class _Decoding:
    """The hooks of one ``json`` decoding; ``refused`` says whether the tree needs a walk."""

    def __init__(self) -> None:
        self.refused = False
        self.decoder = json.JSONDecoder(
            parse_int=self.integer,
            parse_float=self.number,
            parse_constant=self.constant,
            object_pairs_hook=self.object,
        )

    def _refuse(self, message: str) -> _Refused:
        self.refused = True
        return _Refused(message)

    def integer(self, text: str) -> int | _Refused:
        if len(text) > MAX_NUMBER_LENGTH:
            return self._refuse(
                f"is a number of {len(text)} characters; at most {MAX_NUMBER_LENGTH} are accepted"
            )
        return int(text)

    def number(self, text: str) -> float | _Refused:
        if len(text) > MAX_NUMBER_LENGTH:
            return self._refuse(
                f"is a number of {len(text)} characters; at most {MAX_NUMBER_LENGTH} are accepted"
            )
        value = float(text)
        if not math.isfinite(value):
            return self._refuse("is a number too large to represent")
        return value

    def constant(self, name: str) -> _Refused:
        return self._refuse(f"is {name}, which is not a JSON number")

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        made = dict(pairs)
        if len(made) == len(pairs):
            return made
        seen: set[str] = set()
        twice: set[str] = set()
        for key, _value in pairs:
            (twice if key in seen else seen).add(key)
        self.refused = True
        return _KeysTwice(pairs, sorted(twice))


def _too_deep(text: str) -> bool:
    # Cheap first: fewer openers than the limit cannot nest deeper than it.
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    # Brackets inside strings do not nest. Dropping escaped backslashes and quotes leaves
    # only the quotes that delimit strings, so every other piece of a split is outside one.
    # (All str methods and a linear regex: no backtracking on hostile input.)
    outside = "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[0::2])
    brackets = _NOT_BRACKET.sub("", outside)
    return max(accumulate(_DEPTH_STEP[c] for c in brackets), default=0) > MAX_DEPTH


def _walk(value: Any, path: list[str | int], out: list[FieldError], strings: bool) -> None:
    if len(out) >= MAX_DETAILS:
        return
    if isinstance(value, _Refused):
        out.append(FieldError(field_path(path), value.message))
    elif isinstance(value, str):
        if strings and not _encodable(value):
            out.append(FieldError(field_path(path), "holds a lone UTF-16 surrogate"))
    elif isinstance(value, dict):
        if isinstance(value, _KeysTwice):
            for key in value.twice:
                out.append(FieldError(field_path([*path, key]), "is sent more than once"))
        for key, item in value.items():
            if strings and not _encodable(key):
                out.append(FieldError(field_path(path), "has a key with a lone UTF-16 surrogate"))
            _walk(item, [*path, key], out, strings)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, [*path, index], out, strings)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json(raw: bytes) -> Any:
    """Decode a UTF-8 JSON body into plain values, or raise a 400 ``VALIDATION_ERROR``."""
    if not raw.strip():
        raise missing_body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise body_error(
            "The request body is not valid UTF-8.",
            [FieldError(BODY, f"is not valid UTF-8 at byte {e.start}")],
        ) from None
    if _too_deep(text):
        raise body_error(
            "The request body is nested too deeply.",
            [FieldError(BODY, f"nests arrays and objects more than {MAX_DEPTH} levels deep")],
        )
    decoding = _Decoding()
    try:
        value = decoding.decoder.decode(text)
    except json.JSONDecodeError as e:
        raise body_error(
            "The request body is not valid JSON.",
            [FieldError(BODY, f"is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})")],
        ) from None
    except RecursionError:
        # Only reachable with brackets the depth check could not pair up (invalid JSON).
        raise body_error(
            "The request body is nested too deeply.",
            [FieldError(BODY, f"nests arrays and objects more than {MAX_DEPTH} levels deep")],
        ) from None
    strings = _SURROGATE_ESCAPE.search(text) is not None
    if decoding.refused or strings:
        problems: list[FieldError] = []
        _walk(value, [], problems, strings)
        if problems:
            raise body_error("The request body holds values JSON cannot carry; see details.",
                             problems)
    return value
