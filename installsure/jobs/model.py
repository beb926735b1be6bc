"""What the producer and admin APIs return about jobs and queues."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import cattrs
from attrs import frozen

from installsure.jobs.wire import JobOptions


def iso(ms: float | None) -> str | None:
    """Milliseconds since the epoch as ISO 8601 UTC with ``Z`` (API.md)."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000.0, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _from_token(token: str) -> tuple[str | None, float | None]:
    """Worker id and claim time out of a lease token ``<worker>|<ms>|<random>``."""
    parts = token.rsplit("|", 2)
    if len(parts) != 3:
        return None, None
    try:
        return parts[0], float(parts[1])
    except ValueError:
        return parts[0], None


def _max_attempts(options: str | None) -> int:
    try:
        return JobOptions.from_json(options or "").attempts
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError):
        return 1


def _json(value: str | None) -> Any:
    if value in (None, ""):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


@frozen
class JobRecord:
    """One job as stored, for ``get`` and ``list``."""

    id: str
    queue: str
    type: str
    state: str
    payload: Any
    schema_version: int
    priority: int
    attempts_made: int
    max_attempts: int
    stalls: int
    created_at: float | None
    ready_at: float | None
    started_at: float | None
    finished_at: float | None
    progress: Any
    result: Any
    error: str | None
    errors: list[Any]
    worker: str | None
    unique_key: str | None
    idempotency_key: str | None

    @classmethod
    def from_hash(cls, queue: str, fields: dict[str, str]) -> JobRecord:
        """From the job hash; a ``lease`` field (the live lease token) means active."""
        lease = fields.get("lease") or ""
        # The token of the outcome it took, or of the lease that stalled it to dead (kept
        # apart: only a real outcome's token makes a repeated report a success).
        token = fields.get("token") or fields.get("stalled_token") or ""
        worker, started = _from_token(lease or token)
        return cls(
            id=fields["id"],
            queue=queue,
            type=fields.get("type", ""),
            state="active" if lease else fields.get("state", "unknown"),
            payload=_json(fields.get("data")),
            schema_version=int(fields.get("v") or 1),
            priority=int(float(fields.get("priority") or 0)),
            attempts_made=int(fields.get("attempts") or 0),
            max_attempts=_max_attempts(fields.get("opts")),
            stalls=int(fields.get("stalls") or 0),
            created_at=_ms(fields.get("created")),
            ready_at=_ms(fields.get("ready")),
            started_at=started,
            finished_at=_ms(fields.get("finished")),
            progress=_json(fields.get("progress")),
            result=_json(fields.get("result")),
            error=fields.get("error") or None,
            errors=_json(fields.get("errors")) or [],
            worker=worker,
            unique_key=fields.get("uniq") or None,
            idempotency_key=fields.get("idem") or None,
        )

    def to_json(self) -> dict[str, Any]:
        """The API.md shape: camelCase, ISO timestamps."""
        return {
            "id": self.id,
            "queue": self.queue,
            "type": self.type,
            "state": self.state,
            "payload": self.payload,
            "schemaVersion": self.schema_version,
            "priority": self.priority,
            "attemptsMade": self.attempts_made,
            "maxAttempts": self.max_attempts,
            "stalls": self.stalls,
            "createdAt": iso(self.created_at),
            "readyAt": iso(self.ready_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "errors": self.errors,
            "worker": self.worker,
            "uniqueKey": self.unique_key,
            "idempotencyKey": self.idempotency_key,
        }


@frozen
class QueueCounts:
    """Jobs per state of one queue, plus whether it is paused and who works on it."""

    queue: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    dead: int
    is_paused: bool
    workers: int
    completed_last_minute: int

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "waiting": self.waiting,
            "active": self.active,
            "completed": self.completed,
            "failed": self.failed,
            "delayed": self.delayed,
            # Jobs held back by a pause (BullMQ's "paused" count).
            "paused": self.waiting if self.is_paused else 0,
            "dead": self.dead,
            "isPaused": self.is_paused,
            "workers": self.workers,
            "throughput": {"completedLastMinute": self.completed_last_minute,
                           "perSecond": round(self.completed_last_minute / 60.0, 2)},
        }
