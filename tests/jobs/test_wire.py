"""The scripts as files, and what travels between them and Python: job options, claim
replies, worker ids (no Redis needed)."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.model import JobRecord
from installsure.jobs.scripts import SCRIPT_NAMES, script_source
from installsure.jobs.wire import ClaimDecoder, JobOptions, UnreadableClaimReplyError
from installsure.jobs.worker import MAX_WORKER_ID_LENGTH, check_worker_id

_ARG = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")
FALLBACK = JobOptions(attempts=1, backoff=BackoffPolicy(), timeout=42.0)


def lua(name: str) -> str:
    return resources.files("installsure.jobs").joinpath("lua", f"{name}.lua").read_text("utf-8")


def header_and_body(text: str) -> tuple[list[str], str]:
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if not line.startswith("--"))
    return lines[:end], "\n".join(lines[end:])


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_header_names_the_keys_and_argv_it_uses(name: str) -> None:
    """Each script file starts with its name and a header that documents exactly the
    KEYS and ARGV its code reads (numbered from 1, no gaps) and what it returns."""
    header, body = header_and_body(lua(name))
    assert header[0].startswith(f"-- {name}: ")
    documented = {
        (m[1], int(m[2])) for line in header
        if (m := re.match(r"-- (KEYS|ARGV)\[(\d+)\]: \S", line))
    }
    code = "\n".join(line.split("--")[0] for line in body.splitlines())
    used = {(kind, int(n)) for kind, n in _ARG.findall(code)}
    assert ("KEYS", 1) in documented  # every script works on one queue
    assert used - {("KEYS", 1)} == documented - {("KEYS", 1)}
    argv = sorted(n for kind, n in documented if kind == "ARGV")
    assert argv == list(range(1, len(argv) + 1))
    assert any(line.startswith("-- Returns") for line in header)


def test_loader_puts_the_helpers_in_front_of_each_script() -> None:
    """What Redis runs is common.lua followed by the script; an unknown name is refused
    with the list of known ones."""
    source = script_source("claim")
    assert source.startswith(lua("common"))
    assert source.endswith(lua("claim"))
    assert "local function now_ms()" in source
    with pytest.raises(ValueError, match="enqueue, claim"):
        script_source("nope")


def test_job_options_round_trip_and_read_the_older_one_letter_form() -> None:
    """Options are stored with named fields; options stored in the older one-letter
    form (by a version before named options) read the same."""
    options = JobOptions(attempts=4, backoff=BackoffPolicy("fixed", 2.0, 9.0), timeout=30.0)
    text = options.to_json()
    assert json.loads(text) == {
        "attempts": 4, "backoff": {"kind": "fixed", "delay": 2.0, "max": 9.0}, "timeout": 30.0,
    }
    assert JobOptions.from_json(text) == options
    legacy = '{"a": 4, "b": {"kind": "fixed", "delay": 2.0, "max": 9.0}, "t": 30.0}'
    assert JobOptions.from_json(legacy) == options


def claim_reply(options: str | None, *, unique_key: str | None = None) -> str:
    """A claim reply of one job in claim.lua's form."""
    row = ["j1", "1", 0, {"value": 1}, None if options is None else 0, 1, 0, 0, 1000, 2000,
           None, unique_key]
    return json.dumps({
        "status": "ok", "now": 3000, "due": None, "token": "w|1|t:", "types": ["echo"],
        "options": [] if options is None else [options], "jobs": [row],
    })


def test_claim_reply_decodes_into_jobs_with_their_options() -> None:
    """A claim reply becomes ClaimedJob values whose options come from the stored text."""
    options = JobOptions(attempts=3, backoff=BackoffPolicy(), timeout=5.0)
    reply = ClaimDecoder(FALLBACK).decode(claim_reply(options.to_json(), unique_key="u"))
    assert (reply.status, reply.now, reply.due) == ("ok", 3000.0, None)
    job = reply.jobs[0]
    assert (job.id, job.token, job.type, job.data) == ("j1", "w|1|t:1", "echo", {"value": 1})
    assert (job.max_attempts, job.timeout, job.unique_key) == (3, 5.0, "u")
    assert job.idempotency_key is None


@pytest.mark.parametrize("stored", ["not json", '{"attempts": "many"}', "[]", None])
def test_unreadable_stored_options_fall_back_instead_of_failing_the_claim(
    stored: str | None,
) -> None:
    """A job whose stored options cannot be read still decodes, with the fallback
    options (one attempt, the queue's timeout), so it runs rather than stalls."""
    job = ClaimDecoder(FALLBACK).decode(claim_reply(stored)).jobs[0]
    assert job.options == FALLBACK


_ROW = '["j1", "1", 0, {}, null, 1, 0, 0, 1, 2, null, null]'
_NOT_CLAIM_REPLIES = [
    "", "[1, 2]", '{"status": "ok"}', '"ok"', b"\xff", '{"status": 1, "now": 1, "due": null}',
    # jobs that do not match their tables, or rows of the wrong shape
    f'{{"status": "ok", "now": 1, "due": null, "jobs": [{_ROW}]}}',
    f'{{"status": "ok", "now": 1, "due": null, "token": "t", "types": [], "options": [],'
    f' "jobs": [{_ROW}]}}',
    '{"status": "ok", "now": 1, "due": null, "token": "t", "types": ["a"], "options": [],'
    ' "jobs": [["j1", "1", 0]]}',
    '{"status": "ok", "now": 1, "due": null, "token": 5, "types": ["a"], "options": [],'
    f' "jobs": [{_ROW}]}}',
]


@pytest.mark.parametrize("text", _NOT_CLAIM_REPLIES)
def test_a_reply_that_is_no_claim_reply_is_one_clear_error(text: str | bytes) -> None:
    """Whatever is wrong with a reply, the decoder raises UnreadableClaimReplyError."""
    with pytest.raises(UnreadableClaimReplyError):
        ClaimDecoder(FALLBACK).decode(text)


def test_job_record_reads_max_attempts_from_either_options_form() -> None:
    """The admin view of a job shows max attempts whichever form its options have, and
    1 when they cannot be read."""
    def record(opts: str) -> JobRecord:
        return JobRecord.from_hash("q", {"id": "x", "type": "echo", "opts": opts})

    named = JobOptions(attempts=7, backoff=BackoffPolicy(), timeout=1.0).to_json()
    assert record(named).max_attempts == 7
    assert record('{"a": 5, "b": {"kind": "fixed"}, "t": 1}').max_attempts == 5
    assert record("garbage").max_attempts == 1


@pytest.mark.parametrize("worker_id", ['a"b', "back\\slash", "{br}aces]", "näme-ü-日本", "|x|y|"])
def test_worker_ids_with_json_and_lua_syntax_are_accepted(worker_id: str) -> None:
    """Quotes, backslashes, braces, pipes and non-ASCII text are fine worker ids: every
    script encodes them."""
    assert check_worker_id(worker_id) == worker_id


@pytest.mark.parametrize(
    ("worker_id", "error", "message"),
    [
        ("", ValueError, "must not be empty"),
        ("line\nbreak", ValueError, r"control characters .* '\\n' at index 4"),
        ("nul\x00", ValueError, "control characters"),
        ("lone \ud800", ValueError, "lone surrogates"),
        ("x" * (MAX_WORKER_ID_LENGTH + 1), ValueError, "at most 200 characters"),
        (42, TypeError, "must be a string, not int"),
    ],
)
def test_unusable_worker_ids_are_refused_saying_why(
    worker_id: object, error: type[Exception], message: str
) -> None:
    """An id that would forge log lines, cannot be encoded, or is no text is refused at
    once with a message naming the problem."""
    with pytest.raises(error, match=message):
        check_worker_id(worker_id)
