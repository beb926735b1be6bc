"""Settings of the job runner: one ``QueueSettings`` per queue inside ``JobsSettings``.

Plain values only (durations are float seconds) so the global config can load them from
TOML and the environment without converters of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import Attribute, evolve, field, fields, frozen

from installsure.config.values import InvalidSettingError

BACKOFF_KINDS = ("fixed", "exponential", "exponential_jitter")


def _positive(_: object, attribute: Attribute[Any], value: float) -> None:
    if value <= 0:
        raise InvalidSettingError(
            attribute.name, f"{attribute.name} must be greater than 0, got {value!r}"
        )


def _not_negative(_: object, attribute: Attribute[Any], value: float) -> None:
    if value < 0:
        raise InvalidSettingError(
            attribute.name, f"{attribute.name} must be 0 or more, got {value!r}"
        )


def _backoff_kind(_: object, attribute: Attribute[Any], value: str) -> None:
    if value not in BACKOFF_KINDS:
        raise InvalidSettingError(
            attribute.name,
            f"{attribute.name} must be one of {', '.join(BACKOFF_KINDS)}, got {value!r}",
        )


@frozen
class QueueSettings:
    """How one queue behaves; every field can be overridden per queue in config."""

    attempts: int = field(default=3, validator=_positive)
    backoff: str = field(default="exponential", validator=_backoff_kind)
    backoff_delay: float = field(default=1.0, validator=_not_negative)
    backoff_max_delay: float = field(default=3600.0, validator=_not_negative)
    concurrency: int = field(default=5, validator=_positive)
    # 0 means no limit; the limit holds across every worker of the queue.
    rate_limit_count: int = field(default=0, validator=_not_negative)
    rate_limit_period: float = field(default=60.0, validator=_positive)
    # Seconds a processor may run before its Deferred is cancelled; 0 disables.
    timeout: float = field(default=300.0, validator=_not_negative)
    keep_completed_count: int = field(default=1000, validator=_not_negative)
    keep_completed_age: float = field(default=86400.0, validator=_not_negative)
    keep_dead_count: int = field(default=10000, validator=_not_negative)
    keep_dead_age: float = field(default=7 * 86400.0, validator=_not_negative)
    max_stalls: int = field(default=3, validator=_not_negative)
    # Seconds of waiting that make up for one priority level: a job of priority p waits
    # at most p * priority_aging seconds longer than a priority-0 job enqueued with it.
    priority_aging: float = field(default=1.0, validator=_not_negative)


def default_queues() -> dict[str, QueueSettings]:
    """The queues of the old system with its settings (issue 3)."""
    return {
        "file-upload": QueueSettings(
            attempts=3, backoff="exponential", backoff_delay=2.0, concurrency=5,
            rate_limit_count=10, rate_limit_period=60.0,
        ),
        "file-processing": QueueSettings(
            attempts=2, backoff="exponential", backoff_delay=5.0, concurrency=2,
        ),
        "email-send": QueueSettings(
            attempts=5, backoff="exponential", backoff_delay=1.0, concurrency=10,
            rate_limit_count=100, rate_limit_period=60.0,
        ),
        "notification-push": QueueSettings(
            attempts=3, backoff="fixed", backoff_delay=1.0, concurrency=10,
        ),
    }


@frozen
class JobsSettings:
    """Settings of the whole runner (config section ``queues``)."""

    queues: dict[str, QueueSettings] = field(factory=default_queues)
    # A claim holds a job for lease_ttl seconds; heartbeats renew it every
    # heartbeat_interval. A dead worker's jobs go back to waiting after at most
    # lease_ttl + sweeper_interval seconds.
    lease_ttl: float = field(default=3.0, validator=_positive)
    heartbeat_interval: float = field(default=1.0, validator=_positive)
    liveness_ttl: float = field(default=3.0, validator=_positive)
    sweeper_interval: float = field(default=1.0, validator=_positive)
    # The longest Redis outage (restart, failover, lost connection) that live workers
    # ride out with no stall, re-run or refused result. Redis remembers each worker's
    # last report this long (plus a lease), so a report sent again after its reply was
    # lost is answered as the first time.
    outage_grace: float = field(default=30.0, validator=_positive)
    # Jobs claimed per script call (at most; never more than free slots).
    batch_size: int = field(default=50, validator=_positive)
    # Finished jobs are reported to Redis in batches at least this often.
    flush_interval: float = field(default=0.002, validator=_positive)
    # Longest blocking wait of an idle worker before it looks again.
    idle_wait: float = field(default=5.0, validator=_positive)
    # How long idempotency keys are remembered after enqueue.
    idempotency_ttl: float = field(default=86400.0, validator=_positive)
    # Queue counts are published at most this often while they change.
    status_interval: float = field(default=1.0, validator=_positive)
    # Publish one event per job transition (off only for benchmarks).
    job_events: bool = True

    def __attrs_post_init__(self) -> None:
        if self.heartbeat_interval >= self.lease_ttl:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval}) must be shorter than "
                f"lease_ttl ({self.lease_ttl}), or leases lapse between heartbeats"
            )
        for name in self.queues:
            if not name or "{" in name or "}" in name or ":" in name:
                raise ValueError(
                    f"queue name {name!r} is not allowed: use letters, digits and dashes"
                )

    def queue(self, name: str) -> QueueSettings:
        found = self.queues.get(name)
        if found is not None:
            return found
        # Imported here, on the rare miss: an import statement costs a microsecond or
        # so even when the module is loaded, and every enqueue and claim comes here.
        from installsure.jobs.errors import UnknownQueue

        raise UnknownQueue(name, sorted(self.queues))


def queues_with_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, QueueSettings]:
    """The default queues with per-queue fields replaced (``[queues.email-send]
    concurrency = 20`` in TOML); a queue not among the defaults starts from
    ``QueueSettings()``. Every unknown field or bad value is reported at once."""
    queues = default_queues()
    known = {a.name for a in fields(QueueSettings)}
    problems: list[str] = []
    for name, values in overrides.items():
        unknown = sorted(set(values) - known)
        if unknown:
            problems.append(
                f"queues.{name}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
            continue
        try:
            queues[name] = evolve(queues.get(name, QueueSettings()), **values)
        except (TypeError, ValueError) as e:
            problems.append(f"queues.{name}: {e}")
    if problems:
        raise ValueError("; ".join(problems))
    return queues
