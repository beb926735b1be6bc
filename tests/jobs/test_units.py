"""Pure parts of the job runner: backoff, settings validation, registry, admin shapes."""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
import pytest_twisted

from installsure.jobs.admin import QueueAdmin
from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.errors import (
    InvalidOption,
    InvalidPayload,
    InvalidState,
    JobNotFound,
    UnknownQueue,
)
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings, default_queues
from tests.jobs.conftest import Echo, Harness


def test_fixed_backoff_is_constant_and_capped() -> None:
    """Fixed backoff waits the same each time, never more than max_delay."""
    assert [BackoffPolicy("fixed", 2.0).delay_for(n) for n in (1, 2, 5)] == [2.0, 2.0, 2.0]
    assert BackoffPolicy("fixed", 10.0, max_delay=3.0).delay_for(1) == 3.0


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    """Exponential backoff doubles per failure and stops at max_delay, even for huge n."""
    policy = BackoffPolicy("exponential", 1.0, max_delay=60.0)
    assert [policy.delay_for(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert policy.delay_for(10_000) == 60.0


def test_full_jitter_stays_within_the_exponential_bound() -> None:
    """Jittered delays are spread over [0, exponential delay] rather than all equal."""
    policy = BackoffPolicy("exponential_jitter", 1.0, 100.0, random.Random(7))
    delays = [policy.delay_for(4) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100
    assert min(delays) < 2.0
    assert max(delays) > 6.0


def test_backoff_round_trips_through_json() -> None:
    """The policy stored with a job comes back equal."""
    policy = BackoffPolicy("exponential_jitter", 0.5, 30.0)
    assert BackoffPolicy.from_json(policy.to_json()) == policy


def test_bad_backoff_kind_is_refused_with_the_choices() -> None:
    """An unknown backoff kind names the kinds that exist."""
    with pytest.raises(ValueError, match="fixed, exponential, exponential_jitter"):
        BackoffPolicy("linear")
    with pytest.raises(ValueError, match="backoff must be one of"):
        QueueSettings(backoff="linear")


def test_default_queues_carry_the_old_settings() -> None:
    """The four queues of the old system keep their attempts, backoff and limits."""
    queues = default_queues()
    assert (queues["file-upload"].attempts, queues["file-upload"].backoff_delay) == (3, 2.0)
    assert (queues["file-upload"].concurrency, queues["file-upload"].rate_limit_count) == (5, 10)
    assert (queues["file-processing"].attempts, queues["file-processing"].backoff_delay) == (2, 5.0)
    assert queues["email-send"].attempts == 5
    assert (queues["email-send"].concurrency, queues["email-send"].rate_limit_count) == (10, 100)
    assert (queues["notification-push"].backoff, queues["notification-push"].attempts) == (
        "fixed", 3,
    )
    assert queues["email-send"].keep_completed_count == 1000
    assert queues["email-send"].keep_dead_age == 7 * 86400


def test_settings_refuse_nonsense_with_clear_messages() -> None:
    """Settings that cannot work are refused with the field and the value."""
    with pytest.raises(ValueError, match="concurrency must be greater than 0"):
        QueueSettings(concurrency=0)
    with pytest.raises(ValueError, match="heartbeat_interval"):
        JobsSettings(lease_ttl=1.0, heartbeat_interval=2.0)
    with pytest.raises(ValueError, match="queue name"):
        JobsSettings(queues={"a:b": QueueSettings()})
    with pytest.raises(UnknownQueue, match="file-upload"):
        JobsSettings().queue("nope")


def test_registry_refuses_duplicates_and_non_attrs_payloads() -> None:
    """A name registers once; payload types must be attrs classes."""
    registry = JobRegistry()
    registry.register(JobType("a", Echo, lambda p, c: None, "test"))
    with pytest.raises(ValueError, match="twice"):
        registry.register(JobType("a", Echo, lambda p, c: None, "test"))
    with pytest.raises(TypeError, match="attrs class"):
        JobType("b", dict, lambda p, c: None, "test")


def test_payload_validation_runs_attrs_validators() -> None:
    """attrs validators of the payload class run at enqueue, listing the problem."""

    @attrs.frozen
    class Mail:
        to: str = attrs.field(validator=attrs.validators.matches_re(r".+@.+"))

    job_type = JobType("mail", Mail, lambda p, c: None, "test")
    assert job_type.encode_payload({"to": "a@b"}) == '{"to":"a@b"}'
    with pytest.raises(InvalidPayload, match="to"):
        job_type.encode_payload({"to": "nobody"})
    with pytest.raises(InvalidPayload, match="expected str"):
        job_type.encode_payload({"to": 5})


def test_schema_upgrade_on_decode() -> None:
    """A payload stored with an older schema version is upgraded before it is used;
    without an upgrade the error says which versions are involved."""

    @attrs.frozen
    class V2:
        name: str
        size: int

    def upgrade(version: int, data: dict[str, Any]) -> dict[str, Any]:
        return {"name": data["filename"], "size": 0}

    job_type = JobType("f", V2, lambda p, c: None, "test", schema_version=2, upgrade=upgrade)
    assert job_type.decode_payload('{"filename": "a.ifc"}', 1) == V2("a.ifc", 0)
    bare = JobType("f", V2, lambda p, c: None, "test", schema_version=2)
    with pytest.raises(InvalidPayload, match="schema version 1"):
        bare.decode_payload('{"filename": "a.ifc"}', 1)


@pytest_twisted.ensureDeferred
async def test_enqueue_options_are_checked(harness: Harness) -> None:
    """Out-of-range options fail the caller with the option named."""
    with pytest.raises(InvalidPayload, match="priority"):
        await harness.queue.enqueue("echo", Echo(1), priority=-1)
    with pytest.raises(InvalidPayload, match="delay"):
        await harness.queue.enqueue("echo", Echo(1), delay=-5)
    with pytest.raises(InvalidOption, match="attempts"):
        await harness.queue.enqueue("echo", Echo(1), attempts=0)
    with pytest.raises(InvalidPayload, match="unique_key"):
        await harness.queue.enqueue("echo", Echo(1), unique_key="")


@pytest_twisted.ensureDeferred
async def test_admin_returns_json_shapes_and_distinct_errors(harness: Harness) -> None:
    """QueueAdmin answers in API.md shapes and raises UnknownQueue, JobNotFound and
    InvalidState, which the HTTP layer maps to 404/404/400."""
    admin = QueueAdmin(harness.queue)
    job_id = await harness.queue.enqueue("echo", Echo(1))
    status = await admin.status()
    assert set(status["queues"]) == {"test", "other"}
    assert status["queues"]["test"]["waiting"] == 1
    assert set(status["queues"]["test"]) >= {
        "waiting", "active", "completed", "failed", "delayed", "paused", "dead",
        "isPaused", "workers", "throughput",
    }
    page = await admin.list_jobs("test", "waiting", 1, 10)
    assert page["meta"] == {"page": 1, "perPage": 10, "total": 1}
    assert page["jobs"][0]["id"] == job_id
    assert await admin.pause("test") == {"queue": "test", "isPaused": True}
    assert (await admin.status())["queues"]["test"]["isPaused"] is True
    assert (await admin.resume("test"))["isPaused"] is False
    purged = await admin.purge("test", "waiting")
    assert purged == {"queue": "test", "state": "waiting", "removed": 1}
    with pytest.raises(UnknownQueue):
        await admin.list_jobs("nope", "waiting")
    with pytest.raises(JobNotFound):
        await admin.remove("test", job_id)
    with pytest.raises(InvalidState, match="waiting"):
        await admin.list_jobs("test", "bogus")
    with pytest.raises(InvalidState):
        await admin.purge("test", "active")


def test_job_type_names_are_checked() -> None:
    """Names that could break keys or JSON are refused with the allowed characters."""
    with pytest.raises(ValueError, match="letters, digits"):
        JobType('bad"name', Echo, lambda p, c: None, "test")


def test_queue_overrides_merge_onto_the_defaults() -> None:
    """Config overrides change only the named fields; new queues start from the
    defaults; unknown fields and bad values are all reported together."""
    from installsure.jobs.settings import queues_with_overrides

    queues = queues_with_overrides({"email-send": {"concurrency": 20}, "reports": {}})
    assert queues["email-send"].concurrency == 20
    assert queues["email-send"].attempts == 5
    assert queues["reports"] == QueueSettings()
    with pytest.raises(ValueError, match="concurrncy") as info:
        queues_with_overrides({"email-send": {"concurrncy": 1}, "file-upload": {"attempts": 0}})
    assert "attempts must be greater than 0" in str(info.value)
