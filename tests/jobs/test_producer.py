"""Enqueueing: single enqueues of one reactor turn go out together, payloads of plain
fields take the fast path to the same JSON, ids are random version 4 UUIDs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer

from installsure.jobs.errors import InvalidPayload
from installsure.jobs.producer import new_ids
from installsure.jobs.registry import JobType
from installsure.redis.interfaces import RedisUnavailable
from tests.fixtures.redis import RedisServerProcess
from tests.jobs.conftest import Echo, Harness


async def evalsha_calls(h: Harness) -> int:
    stats = await h.redis.execute("INFO", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@pytest_twisted.ensureDeferred
async def test_single_enqueues_of_one_turn_share_script_calls(harness: Harness) -> None:
    """200 callers enqueueing one job each in the same reactor turn (with nothing
    under way before) get 200 distinct ids of jobs that are there, with their own
    payloads, from one script call at the turn's end; a caller whose payload is bad
    fails alone, before anything is sent."""
    await harness.queue.enqueue("echo", Echo(-1))  # scripts loaded, counts settled
    before = await evalsha_calls(harness)
    calls = [harness.queue.enqueue("echo", Echo(n)) for n in range(200)]
    bad = harness.queue.enqueue("echo", {"value": "not a number"})
    ids = await defer.gatherResults(calls)
    with pytest.raises(InvalidPayload):
        await bad
    # The enqueues, and perhaps the counts of a status report (each 0.1 s here).
    assert 1 <= await evalsha_calls(harness) - before <= 3
    assert len(set(ids)) == 200
    records = [await harness.queue.get("test", job_id) for job_id in ids[::50]]
    assert [r.payload["value"] for r in records] == [0, 50, 100, 150]
    assert (await harness.queue.stats("test")).waiting == 201


@pytest_twisted.ensureDeferred
async def test_a_steady_stream_of_single_enqueues_keeps_two_even_batches_going(
    harness: Harness,
) -> None:
    """50 callers that each enqueue again as soon as their job is in: after the first
    few turns their jobs go in two batches of about 25 (half of what is under way),
    so Redis writes one while the other gathers, instead of one batch of 50 or three
    uneven ones; and a lone caller still gets its job in at once."""
    sizes: list[int] = []
    enqueue = harness.queue.scripts.enqueue

    def watching(keys: Any, args: Any) -> Any:
        sizes.append((len(args) - 6) // (2 if args[5] != "" else 6))
        return enqueue(keys, args)

    harness.queue.scripts.enqueue = watching  # type: ignore[method-assign]

    async def caller(n: int) -> None:
        for round_ in range(40):
            await harness.queue.enqueue("echo", Echo(n * 100 + round_))

    await defer.gatherResults([defer.ensureDeferred(caller(n)) for n in range(50)])
    assert sum(sizes) == 2000
    steady = sorted(sizes[len(sizes) // 4:])
    assert 20 <= steady[len(steady) // 2] <= 30
    alone = await defer.DeferredList([harness.queue.enqueue("echo", Echo(-1))])
    assert alone[0][0]
    assert (await harness.queue.stats("test")).waiting == 2001


@pytest_twisted.ensureDeferred
async def test_single_enqueues_of_one_turn_keep_their_keys_apart(harness: Harness) -> None:
    """Within one batch each job keeps its own options: the second of two enqueues with
    one idempotency key gets the first's id, other types and options go to their own
    script calls, and each caller gets the id of its own job."""
    a = harness.queue.enqueue("echo", Echo(1), idempotency_key="k1")
    b = harness.queue.enqueue("echo", Echo(2), idempotency_key="k1")
    c = harness.queue.enqueue("slow", Echo(3), attempts=7)
    d = harness.queue.enqueue("echo", Echo(4), priority=3, delay=0.5)
    first, second, other, later = await defer.gatherResults([a, b, c, d])
    assert first == second
    assert other != first
    assert (await harness.queue.get("test", other)).max_attempts == 7
    record = await harness.queue.get("test", later)
    assert (record.state, record.priority, record.payload["value"]) == ("delayed", 3, 4)


@pytest_twisted.ensureDeferred
async def test_a_failed_batch_fails_every_caller_in_it(
    harness: Harness, redis_server: RedisServerProcess
) -> None:
    """When Redis cannot take the batch, every caller of that turn gets the error."""
    await harness.queue.enqueue("echo", Echo(0))
    redis_server.stop()
    calls = [harness.queue.enqueue("echo", Echo(n)) for n in range(3)]
    results = await defer.DeferredList(calls, consumeErrors=True)
    assert [ok for ok, _ in results] == [False, False, False]
    assert all(f.check(RedisUnavailable) for _, f in results)


@attrs.frozen
class Plain:
    count: int
    name: str
    ratio: float = 0.5
    on: bool = False


@attrs.frozen
class Nested:
    inner: Plain


def test_plain_payloads_encode_as_the_converter_does() -> None:
    """A payload of int, str, float and bool fields gives the JSON the converter's
    path gives (an int in a float field included), and a value of the wrong type in
    an instance is refused as before; classes with other fields take that path."""
    plain = JobType("plain", Plain, lambda p, c: None, "test")
    assert plain.encode_payload(Plain(3, "x", 2, True)) == (
        '{"count":3,"name":"x","ratio":2,"on":true}'
    )
    assert plain.encode_payload({"count": 3, "name": "x", "ratio": 2, "on": True}) == (
        '{"count":3,"name":"x","ratio":2.0,"on":true}'
    )
    # Text is escaped as json.dumps escapes it (the fast path has an encoder of its own).
    odd = 'é "quoted"\n\u2028\x00'
    assert plain.encode_payload(Plain(1, odd)) == json.dumps(
        {"count": 1, "name": odd, "ratio": 0.5, "on": False}, separators=(",", ":")
    )
    for wrong in (Plain("3", "x"), Plain(True, "x"), Plain(1, "x", ratio=float("nan"))):
        with pytest.raises(InvalidPayload):
            plain.encode_payload(wrong)
    nested = JobType("nested", Nested, lambda p, c: None, "test")
    assert nested.encode_payload(Nested(Plain(1, "y"))) == (
        '{"inner":{"count":1,"name":"y","ratio":0.5,"on":false}}'
    )
    with pytest.raises(InvalidPayload):
        nested.encode_payload(Nested(Plain("1", "y")))  # type: ignore[arg-type]


@attrs.frozen
class Checked:
    count: int = attrs.field(validator=attrs.validators.gt(0))


def test_plain_payloads_decode_as_the_converter_does() -> None:
    """Stored JSON of a plain class decodes to the object the converter makes (an int
    stored for a float field becomes a float); missing or extra keys, values of
    another type and values a validator refuses are refused in the converter's words."""
    plain = JobType("plain", Plain, lambda p, c: None, "test")
    loaded = plain.load_payload({"count": 3, "name": "x", "ratio": 2, "on": True}, 1)
    assert loaded == Plain(3, "x", 2.0, True)
    assert type(loaded.ratio) is float  # type: ignore[attr-defined]
    assert plain.load_payload({"count": 3, "name": "x"}, 1) == Plain(3, "x")  # defaults
    wrong: list[dict[str, Any]] = [
        {"count": 3, "name": "x", "ratio": 2, "on": True, "extra": 1},
        {"count": "3", "name": "x", "ratio": 2, "on": True},
        {"count": True, "name": "x", "ratio": 2, "on": True},
        {"count": 3, "name": "x", "ratio": "2", "on": 1},
    ]
    for raw in wrong:
        with pytest.raises(InvalidPayload):
            plain.load_payload(raw, 1)
    checked = JobType("checked", Checked, lambda p, c: None, "test")
    assert checked.load_payload({"count": 1}, 1) == Checked(1)
    with pytest.raises(InvalidPayload, match="count"):
        checked.load_payload({"count": 0}, 1)


def test_new_ids_are_random_version_4_uuids() -> None:
    """Ids come out as canonical version 4 (random) UUID text, all different."""
    ids: list[Any] = new_ids(2000)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(p) == i and p.version == 4 and p.variant == uuid.RFC_4122
               for p, i in zip(parsed, ids, strict=True))
    assert len(set(ids)) == 2000
