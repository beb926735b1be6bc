"""Each Lua script transition, driven directly against a real redis-server."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import pytest_twisted

from installsure.jobs import JobSpec
from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.errors import JobNotFound, JobStateConflict
from installsure.jobs.wire import ClaimDecoder, ClaimReply, JobOptions
from tests.fixtures.redis import RedisServerProcess
from tests.jobs.conftest import Echo, Harness, sleep, wait_until

_FALLBACK = JobOptions(attempts=1, backoff=BackoffPolicy(), timeout=1.0)


async def claim(h: Harness, count: int = 10, worker: str = "w1", **kw: Any) -> ClaimReply:
    """Claim like a worker does; returns the reply as the worker decodes it."""
    qs = h.settings.queue("test")
    reply = await h.queue.scripts.claim(
        [h.queue.keys("test").base],
        [count, worker, kw.get("lease", 1000), kw.get("base", "tok:"), kw.get("rate", 0),
         kw.get("period", 60000), qs.priority_aging * 1000, kw.get("again", "0")],
    )
    return ClaimDecoder(_FALLBACK).decode(reply)


def batch(*items: Any) -> str:
    return json.dumps(list(items))


def sweep_args(max_stalls: int, hold: int = 2000, outage: str = "0") -> list[Any]:
    """The arguments of sweep: max_stalls, aging, liveness, retention, then how long
    stalls are held after an outage and whether the sweeper saw one."""
    return [max_stalls, 1000, 1000, 100, 0, 100, 0, hold, outage]


_REPORT_NUMBERS = itertools.count(1)


def report(
    keep: int, age: int, rows: str, flusher: str = "f1", number: int | None = None
) -> list[Any]:
    """The arguments of fail: retention, the rows, then the flusher's id, the report's
    number (a fresh one unless given) and how long its answer is kept."""
    return [keep, age, rows, flusher, number or next(_REPORT_NUMBERS), 60000]


def completion(
    keep: int, age: int, rows: str, flusher: str = "f1", number: int | None = None
) -> list[Any]:
    """The arguments of complete: as ``report``, the rows last and as plain arguments
    (four per job: id, token, result, unique key)."""
    flat: list[Any] = []
    for row in json.loads(rows):
        flat += [*row, ""] if len(row) == 3 else row
    return [keep, age, flusher, number or next(_REPORT_NUMBERS), 60000, *flat]


def base(h: Harness) -> list[str]:
    return [h.queue.keys("test").base]


async def state(h: Harness, job_id: str) -> str:
    return (await h.queue.get("test", job_id)).state


@pytest_twisted.ensureDeferred
async def test_enqueue_then_claim_leases_in_order(harness: Harness) -> None:
    """Claim returns waiting jobs oldest first, marks them active with a lease token."""
    ids = await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(5)])
    reply = await claim(harness, count=3)
    assert reply.status == "ok"
    rows = reply.jobs
    assert [r.id for r in rows] == ids[:3]
    assert all(r.token.startswith("w1|") and r.token.endswith(f"tok:{2 * i + 1}")
               for i, r in enumerate(rows))
    assert (await harness.queue.get("test", ids[0])).worker == "w1"
    assert rows[0].data == {"value": 0, "note": ""}
    assert [await state(harness, i) for i in ids] == ["active"] * 3 + ["waiting"] * 2
    counts = await harness.queue.stats("test")
    assert (counts.waiting, counts.active) == (2, 3)


@pytest_twisted.ensureDeferred
async def test_enqueue_takes_short_rows_of_id_and_data(harness: Harness) -> None:
    """Jobs with no delay and no key may come as two arguments each (id, payload), the
    priority of all of them given once: they are stored as full rows store them, and
    claimed with jobs that came as full rows, in their order."""
    options = JobOptions(attempts=3, backoff=BackoffPolicy(), timeout=5.0).to_json()
    head = [86400000, 1000, "echo", options, 1]
    short = [*head, 2, "s1", '{"value":1,"note":""}', "s2", '{"value":2,"note":""}']
    full = [*head, "", "f1", '{"value":3,"note":""}', 2, 0, "", "",
            "f2", '{"value":4,"note":""}', 0, 5000, "", ""]
    assert list(await harness.queue.scripts.enqueue(base(harness), short)) == []
    assert list(await harness.queue.scripts.enqueue(base(harness), full)) == []
    records = [await harness.queue.get("test", job_id) for job_id in ("s1", "s2", "f1", "f2")]
    assert [(r.state, r.priority, r.payload["value"], r.max_attempts) for r in records] == [
        ("waiting", 2, 1, 3), ("waiting", 2, 2, 3), ("waiting", 2, 3, 3), ("delayed", 0, 4, 3),
    ]
    # (Jobs of two calls in one millisecond tie, and ties go by id: compare as sets.)
    claimed = [j.id for j in (await claim(harness, count=5)).jobs]
    assert sorted(claimed) == ["f1", "s1", "s2"]
    assert claimed.index("s1") < claimed.index("s2")


@pytest_twisted.ensureDeferred
async def test_producer_sends_short_rows_only_when_no_job_needs_more(
    harness: Harness,
) -> None:
    """A batch whose jobs share their priority and have no delay or key goes as short
    rows; one job with a key, a delay or another priority sends the batch as full
    rows, and each job keeps what it asked for."""
    sent: list[list[Any]] = []
    enqueue = harness.queue.scripts.enqueue

    def watching(keys: Any, args: Any) -> Any:
        sent.append(list(args))
        return enqueue(keys, args)

    harness.queue.scripts.enqueue = watching  # type: ignore[method-assign]
    await harness.queue.enqueue_bulk("echo", [Echo(1), Echo(2)], priority=4)
    await harness.queue.enqueue_bulk(
        "echo", [Echo(3), JobSpec(Echo(4), unique_key="u")]
    )
    await harness.queue.enqueue_bulk("echo", [Echo(5), JobSpec(Echo(6), priority=1)])
    assert [(args[5], len(args)) for args in sent] == [(4, 6 + 2 * 2), ("", 6 + 6 * 2),
                                                       ("", 6 + 6 * 2)]
    counts = await harness.queue.stats("test")
    assert counts.waiting == 6


@pytest_twisted.ensureDeferred
async def test_claim_reply_sends_what_jobs_share_once(harness: Harness) -> None:
    """The reply names each job type and each stored options text once, and every job
    by index: jobs of two types with two option sets decode with their own; a job
    whose options field is gone decodes with the fallback options."""
    await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(3)])
    await harness.queue.enqueue_bulk("slow", [Echo(3)], attempts=7)
    await harness.queue.enqueue_bulk("echo", [Echo(4)], attempts=5)
    broken = await harness.queue.enqueue("echo", Echo(5))
    await harness.redis.execute("HDEL", f"{base(harness)[0]}:job:{broken}", "opts")
    qs = harness.settings.queue("test")
    text = await harness.queue.scripts.claim(
        base(harness), [10, "w1", 1000, "tok:", 0, 60000, qs.priority_aging * 1000, "0"]
    )
    raw = json.loads(text)
    assert sorted(raw["types"]) == ["echo", "slow"]
    assert len(raw["options"]) == 3
    assert raw["token"].startswith("w1|")
    assert raw["token"].endswith("|tok:")
    jobs = ClaimDecoder(_FALLBACK).decode(text).jobs
    # (Jobs of separate calls in one millisecond tie, and ties go by id: sort them.)
    jobs.sort(key=lambda j: j.data["value"])
    assert [(j.type, j.data["value"], j.max_attempts) for j in jobs] == [
        ("echo", 0, 3), ("echo", 1, 3), ("echo", 2, 3), ("slow", 3, 7), ("echo", 4, 5),
        ("echo", 5, _FALLBACK.attempts),
    ]
    assert len({j.token for j in jobs}) == 6
    assert all(j.token.startswith(raw["token"]) for j in jobs)


@pytest_twisted.ensureDeferred
async def test_claim_sent_again_answers_the_jobs_it_leased(harness: Harness) -> None:
    """A claim sent again with the same token base (its reply was lost) answers with the
    jobs that claim leased, their leases renewed, and leases no new ones; with a base
    that leased nothing it claims as usual."""
    ids = await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(5)])
    first = await claim(harness, count=2, base="aaaa:", lease=100)
    await claim(harness, count=1, base="bbbb:", worker="w2")
    again = await claim(harness, count=2, base="aaaa:", again="1", lease=5000)
    assert sorted((j.id, j.token) for j in again.jobs) == sorted(
        (j.id, j.token) for j in first.jobs
    )
    assert again.jobs[0].data == {"value": again.jobs[0].data["value"], "note": ""}
    counts = await harness.queue.stats("test")
    assert (counts.active, counts.waiting) == (3, 2)
    await sleep(0.15)  # past the first lease of 100 ms: renewed by the repeat
    stalled, _, _, _ = await harness.queue.scripts.sweep(
        base(harness), sweep_args(3)
    )
    assert list(stalled) == []
    fresh = await claim(harness, count=2, base="cccc:", again="1")
    assert [j.id for j in fresh.jobs] == ids[3:5]


@pytest_twisted.ensureDeferred
async def test_complete_is_fenced_by_lease_token(harness: Harness) -> None:
    """Completion with the right token completes; a wrong token is refused, job untouched."""
    a, b = await harness.queue.enqueue_bulk("echo", [Echo(1), Echo(2)])
    rows = (await claim(harness)).jobs
    tokens = {r.id: r.token for r in rows}
    refused = await harness.queue.scripts.complete(
        base(harness), completion(100, 0, batch([a, tokens[a], "1"], [b, "stale-token", "2"]))
    )
    assert list(refused) == [b]
    assert await state(harness, a) == "completed"
    assert await state(harness, b) == "active"
    record = await harness.queue.get("test", a)
    assert record.result == 1


@pytest_twisted.ensureDeferred
async def test_complete_sent_again_after_a_lost_reply_is_a_success(harness: Harness) -> None:
    """A completion sent again unchanged (its reply was lost) gets the first answer and
    counts once; sent again in another report (another number, another flusher) it is
    still a success, recognised by the token the job kept; a token that never was this
    job's outcome is refused."""
    a, b = await harness.queue.enqueue_bulk("echo", [Echo(1), Echo(2)])
    tok = {r.id: r.token for r in (await claim(harness)).jobs}
    first = completion(100, 0, batch([a, tok[a], "1"], [b, "stale", "2"]), number=7)
    assert list(await harness.queue.scripts.complete(base(harness), first)) == [b]
    assert list(await harness.queue.scripts.complete(base(harness), first)) == [b]
    again = completion(100, 0, batch([a, tok[a], "1"]), flusher="f2")
    assert list(await harness.queue.scripts.complete(base(harness), again)) == []
    other = completion(100, 0, batch([a, "someone-else|1|x", "1"]), flusher="f2")
    assert list(await harness.queue.scripts.complete(base(harness), other)) == [a]
    counts = await harness.queue.stats("test")
    assert (counts.completed, counts.active, counts.completed_last_minute) == (1, 1, 1)


@pytest_twisted.ensureDeferred
async def test_answer_of_a_report_outlives_its_job(harness: Harness) -> None:
    """Retention may delete a completed job at once (keep 0); the same report sent again
    is still answered as before from the flusher's record, while a new report with that
    token is refused, since nothing is left to show it was applied."""
    job_id = await harness.queue.enqueue("echo", Echo(1))
    token = (await claim(harness)).jobs[0].token
    first = completion(0, 0, batch([job_id, token, "1"]), number=3)
    assert list(await harness.queue.scripts.complete(base(harness), first)) == []
    with pytest.raises(JobNotFound):
        await harness.queue.get("test", job_id)
    assert list(await harness.queue.scripts.complete(base(harness), first)) == []
    later = completion(0, 0, batch([job_id, token, "1"]), number=4)
    assert list(await harness.queue.scripts.complete(base(harness), later)) == [job_id]
    ttl = await harness.redis.execute("PTTL", base(harness)[0] + ":ack:f1")
    assert 0 < int(ttl) <= 60000


@pytest_twisted.ensureDeferred
async def test_fail_sent_again_spends_one_attempt(harness: Harness) -> None:
    """A failed attempt reported twice (lost reply) spends one attempt and records one
    error; the token still counts as reported while the next worker runs the job, and
    once that worker's outcome replaced it, a third report of the old token is refused."""
    job_id = await harness.queue.enqueue("echo", Echo(1))
    old = (await claim(harness)).jobs[0].token
    row = batch([job_id, old, "retry", 0, {"message": "boom"}])
    first = report(100, 0, row, number=1)
    assert list(await harness.queue.scripts.fail(base(harness), first)) == []
    assert list(await harness.queue.scripts.fail(base(harness), first)) == []
    record = await harness.queue.get("test", job_id)
    assert (record.attempts_made, len(record.errors)) == (1, 1)
    new = (await claim(harness, worker="w2")).jobs[0].token
    assert list(await harness.queue.scripts.fail(base(harness), report(100, 0, row))) == []
    assert (await harness.queue.get("test", job_id)).state == "active"
    await harness.queue.scripts.complete(
        base(harness), completion(100, 0, batch([job_id, new, "2"]), flusher="f2")
    )
    assert list(await harness.queue.scripts.fail(base(harness), report(100, 0, row))) == [job_id]
    record = await harness.queue.get("test", job_id)
    assert (record.state, record.result, record.attempts_made) == ("completed", 2, 1)


@pytest_twisted.ensureDeferred
async def test_fail_retry_later_and_dead_transitions(harness: Harness) -> None:
    """fail: 'retry' spends an attempt and waits in failed; 'later' waits in delayed
    without spending one; 'dead' records the error history; due jobs are promoted."""
    a, b, c = await harness.queue.enqueue_bulk("echo", [Echo(1), Echo(2), Echo(3)])
    tok = {r.id: r.token for r in (await claim(harness)).jobs}
    err = {"message": "boom"}
    await harness.queue.scripts.fail(
        base(harness),
        report(100, 0, batch([a, tok[a], "retry", 50, err], [b, tok[b], "later", 50, err],
                       [c, tok[c], "dead", 0, err])),
    )
    ra, rb, rc = [await harness.queue.get("test", i) for i in (a, b, c)]
    assert (ra.state, ra.attempts_made, ra.errors[0]["message"]) == ("failed", 1, "boom")
    assert (rb.state, rb.attempts_made, rb.errors) == ("delayed", 0, [])
    assert (rc.state, rc.attempts_made, rc.error) == ("dead", 1, "boom")
    counts = await harness.queue.stats("test")
    assert (counts.failed, counts.delayed, counts.dead) == (1, 1, 1)
    await sleep(0.08)
    reply = await claim(harness)
    assert sorted(r.id for r in reply.jobs) == sorted([a, b])
    assert sorted(r.attempts_made for r in reply.jobs) == [0, 1]  # attempts travel with the claim


@pytest_twisted.ensureDeferred
async def test_delayed_job_waits_until_due(harness: Harness) -> None:
    """A delayed job is not claimable before its delay; the claim reports when it is due."""
    job_id = await harness.queue.enqueue("echo", Echo(1), delay=0.3)
    reply = await claim(harness)
    assert reply.status == "ok"
    assert reply.jobs == []
    assert reply.due is not None
    assert 0 < reply.due - reply.now <= 300
    assert await state(harness, job_id) == "delayed"
    await sleep(0.35)
    reply = await claim(harness)
    assert reply.jobs[0].id == job_id


@pytest_twisted.ensureDeferred
async def test_heartbeat_extends_leases_and_reports_lost_ones(harness: Harness) -> None:
    """Heartbeat pushes the lease deadline forward and names the tokens it no longer
    holds (a job held twice, under an old token and its own, is named by the old one)."""
    a, b, c = await harness.queue.enqueue_bulk("echo", [Echo(1), Echo(2), Echo(3)])
    tok = {r.id: r.token for r in (await claim(harness, lease=200)).jobs}
    lost = await harness.queue.scripts.heartbeat(
        base(harness),
        ["w1", 5000, 1000, batch(a, tok[a], b, "not-mine", c, "old", c, tok[c]), "0", 2000],
    )
    assert list(lost) == ["not-mine", "old"]
    await sleep(0.25)
    stalled, dead, _, _ = await harness.queue.scripts.sweep(
        base(harness), sweep_args(3)
    )
    assert list(stalled) == [b]  # its lease lapsed; a's and c's were renewed
    assert dead == []
    assert await state(harness, a) == "active"
    counts = await harness.queue.stats("test")
    assert counts.workers == 1


@pytest_twisted.ensureDeferred
async def test_sweeper_counts_stalls_and_kills_after_max(harness: Harness) -> None:
    """A job whose lease lapses goes back to waiting, with a stall counted; past
    max_stalls it goes dead with an explanation; a late result is then refused."""
    job_id = await harness.queue.enqueue("echo", Echo(1))
    token = ""
    for _ in range(3):
        token = (await claim(harness, lease=10)).jobs[0].token
        await sleep(0.02)
        stalled, dead, _, _ = await harness.queue.scripts.sweep(
            base(harness), sweep_args(2)
        )
    assert list(stalled) == []
    assert list(dead) == [job_id]
    record = await harness.queue.get("test", job_id)
    assert record.state == "dead"
    assert record.stalls == 3
    assert "stalled 3 times" in (record.error or "")
    refused = await harness.queue.scripts.complete(
        base(harness), completion(100, 0, batch([job_id, token, "1"]))
    )
    assert list(refused) == [job_id]


@pytest_twisted.ensureDeferred
async def test_release_puts_jobs_back_at_the_head(harness: Harness) -> None:
    """Release returns a held job to the head of waiting with its attempts unchanged."""
    a, b, _c = await harness.queue.enqueue_bulk("echo", [Echo(1), Echo(2), Echo(3)])
    rows = (await claim(harness, count=2)).jobs
    tok = {r.id: r.token for r in rows}
    assert await harness.queue.scripts.release(base(harness), [batch(b, tok[b], a, "stale")]) == 1
    reply = await claim(harness, count=1)
    assert reply.jobs[0].id == b  # ahead of c, which never ran
    assert (await harness.queue.get("test", b)).attempts_made == 0


@pytest_twisted.ensureDeferred
async def test_unique_key_dedupes_pending_jobs_only(harness: Harness) -> None:
    """A unique key returns the pending job's id; once that job finished, a new job is made."""
    first = await harness.queue.enqueue("echo", Echo(1), unique_key="file-42")
    again = await harness.queue.enqueue("echo", Echo(2), unique_key="file-42")
    assert again == first
    token = (await claim(harness)).jobs[0].token
    assert await harness.queue.enqueue("echo", Echo(3), unique_key="file-42") == first
    await harness.queue.scripts.complete(
        base(harness), completion(100, 0, batch([first, token, "null"]))
    )
    later = await harness.queue.enqueue("echo", Echo(4), unique_key="file-42")
    assert later != first


@pytest_twisted.ensureDeferred
async def test_idempotency_key_dedupes_even_after_completion(harness: Harness) -> None:
    """An idempotency key answers with the first job's id for the TTL, finished or not."""
    first = await harness.queue.enqueue("echo", Echo(1), idempotency_key="req-1")
    token = (await claim(harness)).jobs[0].token
    await harness.queue.scripts.complete(
        base(harness), completion(100, 0, batch([first, token, "null"]))
    )
    assert await harness.queue.enqueue("echo", Echo(1), idempotency_key="req-1") == first
    ids = await harness.queue.enqueue_bulk(
        "echo", [JobSpec(Echo(1), idempotency_key="req-1"), JobSpec(Echo(2))]
    )
    assert ids[0] == first
    assert ids[1] != first
    assert (await harness.queue.stats("test")).waiting == 1


@pytest_twisted.ensureDeferred
async def test_pause_stops_claims_and_resume_restarts(harness: Harness) -> None:
    """A paused queue is not claimed from; resume makes its jobs claimable again."""
    await harness.queue.enqueue("echo", Echo(1))
    await harness.queue.pause("test")
    assert (await claim(harness)).status == "paused"
    counts = await harness.queue.stats("test")
    assert counts.is_paused
    assert counts.to_json()["paused"] == 1
    await harness.queue.resume("test")
    assert len((await claim(harness)).jobs) == 1


@pytest_twisted.ensureDeferred
async def test_rate_limit_in_claim_script(harness: Harness) -> None:
    """The claim script hands out at most rate jobs per period and says how long to wait."""
    await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(10)])
    first = await claim(harness, count=10, rate=4, period=300)
    assert len(first.jobs) == 4
    limited = await claim(harness, count=10, rate=4, period=300, worker="w2")
    assert limited.status == "limited"
    assert 0 <= limited.reopens_in <= 300
    await sleep(0.32)
    assert len((await claim(harness, count=10, rate=4, period=300)).jobs) == 4


@pytest_twisted.ensureDeferred
async def test_priorities_with_aging(harness_factory: Any) -> None:
    """Lower priority numbers go first, but a low-priority job that waited longer than
    priority * aging goes ahead of fresh high-priority jobs (no starvation)."""
    h: Harness = harness_factory(priority_aging=0.1)
    low = await h.queue.enqueue("echo", Echo(0), priority=2)  # aged after 0.2 s
    high = await h.queue.enqueue("echo", Echo(1), priority=0)
    assert [r.id for r in (await claim(h, count=2)).jobs] == [high, low]
    old_low = await h.queue.enqueue("echo", Echo(2), priority=2)
    await sleep(0.25)
    fresh_high = await h.queue.enqueue("echo", Echo(3), priority=0)
    assert [r.id for r in (await claim(h, count=2)).jobs] == [old_low, fresh_high]


@pytest_twisted.ensureDeferred
async def test_retention_bounds_finished_jobs(harness_factory: Any) -> None:
    """Completed jobs beyond keep_completed_count are deleted, hash and all, oldest first."""
    h: Harness = harness_factory(keep_completed_count=5)
    ids = await h.queue.enqueue_bulk("echo", [Echo(i) for i in range(12)])
    rows = (await claim(h, count=12)).jobs
    for row in rows:  # one by one, so finish times follow the order
        await h.queue.scripts.complete(
            base(h), completion(5, 0, batch([row.id, row.token, "null"]))
        )
    counts = await h.queue.stats("test")
    assert counts.completed == 5
    with pytest.raises(JobNotFound):
        await h.queue.get("test", ids[0])
    assert (await h.queue.get("test", ids[-1])).state == "completed"
    # Age bound: everything older than 1 ms goes on the next completion.
    extra = await h.queue.enqueue("echo", Echo(99))
    token = (await claim(h)).jobs[0].token
    await sleep(0.01)
    await h.queue.scripts.complete(base(h), completion(5, 1, batch([extra, token, "null"])))
    assert (await h.queue.stats("test")).completed <= 1


@pytest_twisted.ensureDeferred
async def test_admin_retry_remove_purge_retry_all(harness: Harness) -> None:
    """retry revives a dead job with fresh attempts, remove refuses active jobs and
    deletes others, retry_dead_all and purge act on whole states."""
    ids = await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(4)])
    tok = {r.id: r.token for r in (await claim(harness)).jobs}
    err = {"message": "x"}
    await harness.queue.scripts.fail(
        base(harness), report(100, 0, batch(*[[i, tok[i], "dead", 0, err] for i in ids[:3]]))
    )
    with pytest.raises(JobStateConflict):
        await harness.queue.remove("test", ids[3])  # active
    await harness.queue.retry("test", ids[0])
    record = await harness.queue.get("test", ids[0])
    assert (record.state, record.attempts_made) == ("waiting", 0)
    await harness.queue.remove("test", ids[1])
    with pytest.raises(JobNotFound):
        await harness.queue.get("test", ids[1])
    with pytest.raises(JobNotFound):
        await harness.queue.retry("test", "no-such-job")
    assert await harness.queue.retry_dead_all("test") == 1
    assert await harness.queue.purge("test", "waiting") == 2
    counts = await harness.queue.stats("test")
    assert (counts.waiting, counts.dead, counts.active) == (0, 0, 1)


@pytest_twisted.ensureDeferred
async def test_list_pages_jobs_by_state(harness: Harness) -> None:
    """list returns one page of a state with the total; finished states newest first."""
    ids = await harness.queue.enqueue_bulk("echo", [Echo(i) for i in range(7)])
    page, total = await harness.queue.list("test", "waiting", page=2, per_page=3)
    assert total == 7
    assert [j.id for j in page] == ids[3:6]
    assert page[0].payload == {"value": 3, "note": ""}
    assert page[0].to_json()["createdAt"].endswith("Z")


HOSTILE_WORKER_IDS = ['q"uote', "back\\slash", '{"json": [1]}', "]]..'--", "näme 日本 ✓"]


@pytest.mark.parametrize("worker", HOSTILE_WORKER_IDS)
@pytest_twisted.ensureDeferred
async def test_claim_reply_stays_json_whatever_the_worker_id(harness: Harness, worker: str) -> None:
    """Worker ids with quotes, backslashes, braces, Lua syntax or non-ASCII text come
    back intact in the lease token of a readable claim reply, and in the admin view."""
    job_id = await harness.queue.enqueue("echo", Echo(1))
    reply = await claim(harness, worker=worker)
    assert reply.status == "ok"
    assert [job.id for job in reply.jobs] == [job_id]
    assert reply.jobs[0].token.startswith(worker + "|")
    assert (await harness.queue.get("test", job_id)).worker == worker
    lost = await harness.queue.scripts.heartbeat(
        base(harness), [worker, 5000, 1000, batch(job_id, reply.jobs[0].token), "0", 2000]
    )
    assert list(lost) == []
    assert (await harness.queue.stats("test")).workers == 1


@pytest_twisted.ensureDeferred
async def test_sweep_after_a_worker_saw_an_outage_counts_no_stall_for_a_while(
    harness: Harness,
) -> None:
    """A sweep from a worker that could not reach Redis counts no stall, and no sweep
    does for the hold that follows (it answers how long is left); after it, a lease
    that lapsed is a stall again. A heartbeat that says so starts the same hold."""
    job_id = await harness.queue.enqueue("echo", Echo(1))
    await claim(harness, lease=50)
    await sleep(0.1)
    stalled, _, _, left = await harness.queue.scripts.sweep(
        base(harness), sweep_args(3, hold=400, outage="1")
    )
    assert (list(stalled), 300 < left <= 400) == ([], True)
    stalled, _, _, left = await harness.queue.scripts.sweep(base(harness), sweep_args(3))
    assert (list(stalled), 0 < left <= 400) == ([], True)
    await sleep(0.45)
    stalled, _, _, left = await harness.queue.scripts.sweep(base(harness), sweep_args(3))
    assert (list(stalled), left) == ([job_id], 0)
    await claim(harness, lease=50)
    await harness.queue.scripts.heartbeat(base(harness), ["w9", 5000, 1000, "[]", "1", 400])
    await sleep(0.1)
    stalled, _, _, left = await harness.queue.scripts.sweep(base(harness), sweep_args(3))
    assert (list(stalled), left > 200) == ([], True)
    record = await harness.queue.get("test", job_id)
    assert (record.state, record.stalls) == ("active", 1)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_sweep_takes_a_restarted_redis_for_an_outage(
    harness: Harness, redis_server: RedisServerProcess
) -> None:
    """The first sweep that meets another Redis than the last one did (a restart, here
    with AOF; a failover is the same to it) holds stalls, although no worker said it
    saw an outage; a queue's very first sweep holds nothing."""
    job_id = await harness.queue.enqueue("echo", Echo(1))
    _, _, _, left = await harness.queue.scripts.sweep(base(harness), sweep_args(3))
    assert left == 0
    await claim(harness, lease=50)
    redis_server.restart()
    await wait_until(lambda: harness.redis.execute("PING"), timeout=10)
    await sleep(0.1)
    stalled, _, _, left = await harness.queue.scripts.sweep(
        base(harness), sweep_args(3, hold=300)
    )
    assert (list(stalled), 200 < left <= 300) == ([], True)
    await sleep(0.35)
    stalled, _, _, _ = await harness.queue.scripts.sweep(base(harness), sweep_args(3))
    assert list(stalled) == [job_id]
