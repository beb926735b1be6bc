"""Job types: name → attrs payload class, processor, queue and default options.

Payloads are checked here, when enqueued, so a bad payload fails the caller at once
rather than a worker minutes later.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
from attrs import field, frozen
from cattrs.v import format_exception

from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.errors import InvalidPayload, UnknownJobType

if TYPE_CHECKING:
    from installsure.jobs.context import JobContext

Processor = Callable[[Any, "JobContext"], object]
"""Called with the payload and a JobContext; returns a value, a Deferred or a coroutine."""

Upgrade = Callable[[int, dict[str, Any]], dict[str, Any]]
"""Turns a payload stored with an older schema version into the current shape."""


def _strict_converter() -> cattrs.Converter:
    """A converter that refuses ``"5"`` for an int instead of quietly converting it."""
    conv = cattrs.Converter(forbid_extra_keys=True)

    def strict(kind: type, accept: tuple[type, ...], reject: tuple[type, ...] = ()) -> None:
        def hook(value: object, _: type) -> object:
            if isinstance(value, reject) or not isinstance(value, accept):
                raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
            return kind(value)

        conv.register_structure_hook(kind, hook)

    strict(str, (str,))
    strict(int, (int,), (bool,))
    strict(float, (int, float), (bool,))
    strict(bool, (bool,))
    return conv


_converter = _strict_converter()
# One encoder for every payload: json.dumps with options builds a new one per call.
_json_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_encode_json = _json_encoder.encode


def _flat_encoder() -> Callable[[dict[str, Any]], str]:
    """The JSON of a flat object of plain values, as ``_encode_json`` writes it, in a
    fifth of the time: ``JSONEncoder.encode`` makes a new C encoder on every call, this
    one is made once. Without circular-reference markers, which a flat object of
    numbers, strings and booleans cannot need."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return _encode_json
    c_encode = make(
        None, _json_encoder.default, json.encoder.encode_basestring_ascii,
        None, ":", ",", False, False, False,
    )

    def encode(data: dict[str, Any]) -> str:
        return "".join(c_encode(data, 0))

    return encode


_encode_flat_json = _flat_encoder()
_MISSING = object()
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")

# Field types whose values the fast path checks by their exact type; the strict
# converter accepts an int for a float, and so does the fast path.
_PLAIN_TYPES: dict[Any, tuple[type, ...]] = {
    int: (int,), str: (str,), bool: (bool,), float: (float, int),
}


_PlainFields = tuple[tuple[tuple[str, tuple[type, ...]], ...], bool]


@functools.cache
def _plain_fields(payload_type: type) -> _PlainFields | None:
    """For a payload class whose fields are all int, str, float or bool: each field's
    name and the exact types its value may have, and whether any field has a
    validator. None for any other class (its payloads take the converter's path)."""
    try:
        attrs.resolve_types(payload_type)
    except Exception:  # a forward reference that does not resolve: no fast path
        return None
    plain = []
    for f in attrs.fields(payload_type):
        accept = _PLAIN_TYPES.get(f.type)
        if accept is None:
            return None
        plain.append((f.name, accept))
    return tuple(plain), any(f.validator is not None for f in attrs.fields(payload_type))


@functools.cache
def _plain_init(payload_type: type) -> tuple[tuple[str, tuple[type, ...], bool], ...] | None:
    """For a payload class of plain fields (``_plain_fields``) each passed to
    ``__init__`` under its own name: each field's name, the exact types its stored
    value may have, and whether an int is turned into a float for it (as the strict
    converter does). None for any other class."""
    plain = _plain_fields(payload_type)
    if plain is None:
        return None
    if any(not f.init or f.alias != f.name for f in attrs.fields(payload_type)):
        return None
    return tuple((name, accept, float in accept) for name, accept in plain[0])


def _describe(error: BaseException, type_: type | None) -> str:
    """cattrs' wording, plus the validator's own message (which says what is wrong)."""
    if isinstance(error, ValueError | TypeError) and str(error):
        return f"invalid value ({error})"
    return format_exception(error, type_)


@frozen
class JobType:
    """One kind of job. ``queue`` names a queue of ``JobsSettings.queues``; options left
    ``None`` come from that queue's settings."""

    name: str
    payload_type: type
    processor: Processor
    queue: str
    schema_version: int = 1
    attempts: int | None = None
    backoff: BackoffPolicy | None = None
    timeout: float | None = None
    priority: int = 0
    upgrade: Upgrade | None = None

    def __attrs_post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"job type name {self.name!r} is not allowed: use letters, digits, '.', "
                "'_' and '-' (at most 100)"
            )
        if not attrs.has(self.payload_type):
            raise TypeError(
                f"job type {self.name!r}: payload_type must be an attrs class, "
                f"got {self.payload_type!r}"
            )

    def encode_payload(self, payload: object) -> str:
        """Validate ``payload`` (an instance of ``payload_type`` or a mapping of its
        fields) and return its JSON; raises InvalidPayload listing every problem."""
        if type(payload) is self.payload_type:
            fast = self._encode_plain(payload)
            if fast is not None:
                return fast
        if isinstance(payload, self.payload_type):
            try:
                attrs.validate(payload)  # type: ignore[arg-type]
            except (TypeError, ValueError) as e:
                raise InvalidPayload(self.name, [str(e)]) from None
            data = _converter.unstructure(payload)
            # Round-trip so wrongly typed fields of an instance are caught as well.
            self._structure(data)
        elif isinstance(payload, Mapping):
            instance = self._structure(dict(payload))
            data = _converter.unstructure(instance)
        else:
            raise InvalidPayload(
                self.name,
                [f"expected {self.payload_type.__name__} or a mapping, "
                 f"got {type(payload).__name__}"],
            )
        try:
            return _encode_json(data)
        except (TypeError, ValueError) as e:
            raise InvalidPayload(self.name, [f"payload is not JSON serialisable: {e}"]) from None

    def _encode_plain(self, payload: object) -> str | None:
        """The JSON of an instance whose fields all hold a value of exactly their plain
        type (the usual case, and the hot path of bulk enqueues): the same text the
        converter's path gives, in a fraction of the time. None: take that path."""
        plain = _plain_fields(self.payload_type)
        if plain is None:
            return None
        fields, validated = plain
        data = {}
        for name, accept in fields:
            value = getattr(payload, name)
            if type(value) not in accept:
                return None
            data[name] = value
        if validated:
            try:
                attrs.validate(payload)  # type: ignore[arg-type]
            except (TypeError, ValueError) as e:
                raise InvalidPayload(self.name, [str(e)]) from None
        try:
            return _encode_flat_json(data)
        except ValueError as e:
            raise InvalidPayload(self.name, [f"payload is not JSON serialisable: {e}"]) from None

    def decode_payload(self, data: str, version: int) -> object:
        """The payload object of a stored job, upgraded from an older schema if needed."""
        return self.load_payload(json.loads(data), version)

    def load_payload(self, raw: Any, version: int) -> object:
        """Like decode_payload, from the already parsed JSON."""
        if not isinstance(raw, dict):
            raise InvalidPayload(self.name, [f"stored payload is not an object: {raw!r:.100}"])
        if version != self.schema_version:
            if version > self.schema_version or self.upgrade is None:
                raise InvalidPayload(
                    self.name,
                    [f"stored with schema version {version}, this worker knows "
                     f"{self.schema_version} and has no upgrade for it"],
                )
            raw = self.upgrade(version, raw)
        plain = self._load_plain(raw)
        return self._structure(raw) if plain is None else plain

    def _load_plain(self, raw: dict[str, Any]) -> object | None:
        """The payload of stored JSON that has every field of a plain class, no other
        key, and values of exactly the fields' types (the usual case, and the hot path
        of every claimed job): the object the converter makes, made directly. None:
        take the converter's path (which also words what is wrong)."""
        fields = _plain_init(self.payload_type)
        if fields is None or len(raw) != len(fields):
            return None
        values = {}
        for name, accept, to_float in fields:
            value = raw.get(name, _MISSING)
            kind = type(value)
            if kind not in accept:
                return None
            values[name] = float(value) if to_float and kind is int else value
        try:
            payload: object = self.payload_type(**values)
        except (TypeError, ValueError):  # a validator refused it: the converter says why
            return None
        return payload

    def _structure(self, data: dict[str, Any]) -> object:
        try:
            return _converter.structure(data, self.payload_type)
        except cattrs.BaseValidationError as e:
            raise InvalidPayload(
                self.name, cattrs.transform_error(e, format_exception=_describe)
            ) from None
        except (TypeError, ValueError) as e:
            raise InvalidPayload(self.name, [str(e)]) from None


@attrs.define
class JobRegistry:
    """All job types the process knows, by name."""

    _types: dict[str, JobType] = field(factory=dict)

    def register(self, job_type: JobType) -> JobType:
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type
        return job_type

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(name, sorted(self._types)) from None

    def for_queue(self, queue: str) -> list[JobType]:
        return [t for t in self._types.values() if t.queue == queue]

    def __iter__(self) -> Iterator[JobType]:
        return iter(self._types.values())

    def __contains__(self, name: object) -> bool:
        return name in self._types
