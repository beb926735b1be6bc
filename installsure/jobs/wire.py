"""What travels between Python and the Lua scripts: job options and claim replies.

Both are attrs classes. Options are decoded with cattrs. The claim reply is the hottest
path of the runner (one per batch of jobs): it is decoded by hand from its compact form
(see ``claim.lua``), and options, which every job of a type shares, are decoded once
per distinct text.
"""

from __future__ import annotations

import json
from typing import Any

import cattrs
from attrs import define, field, frozen

from installsure.bounded import remember
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


@define
class ClaimedJob:
    """A job a worker holds a lease on: one job of a claim reply (see ``claim.lua``).
    Times are Redis' milliseconds since the epoch.

    Treated as a value, though not frozen: one is made per claimed job, and a frozen
    class's ``__init__`` costs five times as much."""

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

    def decode(self, text: str | bytes) -> ClaimReply:
        """Raises UnreadableClaimReplyError when ``text`` is no claim reply (e.g. a claim
        script of another version is loaded)."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("a claim reply is a JSON object")
            status = raw["status"]
            if not isinstance(status, str):
                raise ValueError(f"a claim reply's status is text, not {status!r:.100}")
            due = raw["due"]
            reply = ClaimReply(
                status, float(raw["now"]), None if due is None else float(due),
                float(raw.get("reopens_in", 0.0)),
            )
            rows = raw.get("jobs")
            if rows:
                reply.jobs.extend(self._jobs(raw["token"], raw["types"], raw["options"], rows))
            return reply
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise UnreadableClaimReplyError(f"{type(e).__name__}: {e}") from None

    def _jobs(
        self, prefix: str, types: list[str], options: list[str], rows: list[list[Any]]
    ) -> list[ClaimedJob]:
        if not isinstance(prefix, str) or not all(isinstance(t, str) for t in types):
            raise ValueError("a claim reply's token prefix and types are text")
        decoded = [self._decode_options(text) for text in options]
        fallback = self._fallback
        jobs = []
        for row in rows:
            (job_id, token_rest, type_index, data, options_index, version, attempts, stalls,
             created, ready, idem, uniq) = row
            if not isinstance(job_id, str) or type(type_index) is not int:
                raise ValueError(f"a claimed job is [id, token, type, ...], not {row!r:.200}")
            jobs.append(ClaimedJob(
                job_id, prefix + token_rest, types[type_index], data,
                fallback if options_index is None else decoded[options_index],
                int(version), int(attempts), int(stalls), float(created), float(ready),
                idem, uniq,
            ))
        return jobs

    def _decode_options(self, text: Any) -> JobOptions:
        options = self._options.get(text)
        if options is None:
            try:
                options = JobOptions.from_json(text)
            except (ValueError, TypeError, KeyError, cattrs.BaseValidationError):
                options = self._fallback
            remember(self._options, text, options, _OPTIONS_CACHE_SIZE)
        return options
