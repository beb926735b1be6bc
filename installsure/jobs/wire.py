"""What travels between Python and the Lua scripts: job options and claim replies.

Both are attrs classes decoded with cattrs. The claim reply is the hottest path of the
runner (one per batch of jobs), so its converter skips cattrs' detailed validation and
options, which every job of a type shares, are decoded once per distinct text.
"""

from __future__ import annotations

import json
from typing import Any

import cattrs
from attrs import field, frozen

from installsure.jobs.backoff import BackoffPolicy

# Option keys of jobs enqueued before options had names; such jobs may still wait.
_LEGACY_OPTION_KEYS = {"a": "attempts", "b": "backoff", "t": "timeout"}
_OPTIONS_CACHE_SIZE = 1000


class UnreadableClaimReplyError(ValueError):
    """Redis answered a claim with something that is not a claim reply."""


@frozen
class JobOptions:
    """How a job runs: stored with it when enqueued, handed to the worker that claims it."""

    attempts: int
    backoff: BackoffPolicy
    timeout: float  # seconds; 0 means none

    def to_json(self) -> str:
        return json.dumps(_converter.unstructure(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobOptions:
        """Raises ValueError (or a cattrs error) when ``text`` is not job options."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"job options are not an object: {text[:100]!r}")
        if "a" in raw:
            raw = {_LEGACY_OPTION_KEYS.get(k, k): v for k, v in raw.items()}
        return _converter.structure(raw, cls)


@frozen
class ClaimedJob:
    """A job a worker holds a lease on: one job of a claim reply (see ``claim.lua``).
    Times are Redis' milliseconds since the epoch."""

    id: str
    token: str
    type: str
    data: Any
    options: JobOptions
    version: int
    attempts_made: int
    stalls: int
    created: float
    ready: float
    idempotency_key: str | None
    unique_key: str | None

    @property
    def max_attempts(self) -> int:
        return self.options.attempts

    @property
    def backoff(self) -> BackoffPolicy:
        return self.options.backoff

    @property
    def timeout(self) -> float:
        return self.options.timeout


@frozen
class ClaimReply:
    """What one claim call answered: ``status`` is ``ok``, ``paused`` or ``limited``."""

    status: str
    now: float
    due: float | None
    reopens_in: float = 0.0  # ms until the rate-limit window reopens ("limited")
    jobs: list[ClaimedJob] = field(factory=list)


def _backoff_from_json(raw: Any, _: type) -> BackoffPolicy:
    if not isinstance(raw, dict):
        raise ValueError(f"a backoff policy is an object, not {raw!r:.100}")
    return BackoffPolicy.from_json(raw)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=False)
    conv.register_structure_hook(BackoffPolicy, _backoff_from_json)
    conv.register_unstructure_hook(BackoffPolicy, BackoffPolicy.to_json)
    return conv


_converter = _make_converter()


class ClaimDecoder:
    """Decodes the claim replies of one queue. A job whose stored options cannot be read
    still runs, once, with ``fallback`` options, and its failure says why if it fails."""

    def __init__(self, fallback: JobOptions) -> None:
        self._fallback = fallback
        self._options: dict[str | None, JobOptions] = {}
        self._converter = _make_converter()
        self._converter.register_structure_hook(JobOptions, self._decode_options)

    def decode(self, text: str | bytes) -> ClaimReply:
        """Raises UnreadableClaimReplyError when ``text`` is no claim reply (e.g. a claim
        script of another version is loaded)."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("a claim reply is a JSON object")
            return self._converter.structure(raw, ClaimReply)
        except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as e:
            raise UnreadableClaimReplyError(f"{type(e).__name__}: {e}") from None

    def _decode_options(self, text: Any, _: type) -> JobOptions:
        options = self._options.get(text)
        if options is None:
            try:
                options = JobOptions.from_json(text)
            except (ValueError, TypeError, KeyError, cattrs.BaseValidationError):
                options = self._fallback
            if len(self._options) >= _OPTIONS_CACHE_SIZE:
                self._options.clear()
            self._options[text] = options
        return options
