"""argon2id hashing off the reactor thread, the queue bound, rehashing on login when
the parameters change, the password policy, and the timing of unknown addresses."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator

import argon2
import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer, reactor

from installsure.auth.password_policy import common_passwords, password_problems
from installsure.auth.passwords import (
    PasswordHasher,
    PasswordHasherBusy,
    default_password_threads,
)
from installsure.auth.settings import AuthSettings
from installsure.db.tables import users
from tests.auth.conftest import MakeStack


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    service = PasswordHasher(time_cost=1, memory_kib=8, parallelism=1, threads=2,
                             queue_limit=3, reactor=reactor)
    service.startService()
    yield service
    service.stopService()


@pytest_twisted.ensureDeferred
async def test_hashes_are_argon2id_made_off_the_reactor_thread(hasher: PasswordHasher) -> None:
    """A hash is argon2id in PHC form with the configured parameters, it verifies the
    right password only, and the work ran on the hasher's own threads, at a lower CPU
    priority (higher nice value) than the reactor thread's."""
    threads: list[str] = []
    priorities: list[int] = []
    hash_now, verify_now = hasher.hash_now, hasher.verify_now

    def hashing(password: str) -> str:
        threads.append(threading.current_thread().name)
        priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return hash_now(password)

    def verifying(stored: str, password: str) -> bool:
        threads.append(threading.current_thread().name)
        return verify_now(stored, password)

    hasher.hash_now = hashing  # type: ignore[method-assign]
    hasher.verify_now = verifying  # type: ignore[method-assign]
    stored = await hasher.hash("Sesame-street-42")
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert await hasher.verify(stored, "Sesame-street-42") is True
    assert await hasher.verify(stored, "sesame-street-42") is False
    assert await hasher.verify("not a hash at all", "Sesame-street-42") is False
    assert await hasher.verify_unknown("Sesame-street-42") is False
    assert len(threads) == 5
    assert all("installsure-passwords" in name for name in threads), threads
    assert threading.current_thread() is threading.main_thread()
    reactor_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert priorities
    assert all(nice > reactor_nice for nice in priorities), (priorities, reactor_nice)


@pytest_twisted.ensureDeferred
async def test_the_queue_of_waiting_hashes_is_bounded(hasher: PasswordHasher) -> None:
    """With queue_limit=3, a fourth hash asked for while three are pending fails at once
    with PasswordHasherBusy; once they finish, hashing works again."""
    pending = [hasher.hash(f"password-{n}-long") for n in range(3)]
    assert hasher.pending == 3
    with pytest.raises(PasswordHasherBusy):
        await hasher.hash("one-too-many-passwords")
    await defer.gatherResults(pending)
    assert hasher.pending == 0
    assert (await hasher.hash("back-to-normal-ok")).startswith("$argon2id$")


def test_needs_rehash_follows_the_parameters() -> None:
    """A hash made with other parameters (or not argon2 at all) needs rehashing; one made
    with the configured parameters does not."""
    current = PasswordHasher(time_cost=2, memory_kib=16, parallelism=1)
    old = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x" * 12)
    assert current.needs_rehash(old) is True
    assert current.needs_rehash(current.hash_now("x" * 12)) is False
    assert current.needs_rehash("plaintext") is True


@pytest_twisted.ensureDeferred
async def test_login_rehashes_when_the_parameters_changed(make_stack: MakeStack) -> None:
    """An account whose hash was made with older, cheaper parameters signs in and its
    stored hash is replaced by one with the current parameters (the old password still
    signs in afterwards)."""
    old = await make_stack(argon2_time_cost=1, argon2_memory_kib=8)
    await old.register("yara@example.com")
    newer = await make_stack(argon2_time_cost=2, argon2_memory_kib=16)

    async def stored() -> str:
        return await newer.database.run(lambda conn: conn.execute(  # type: ignore[no-any-return]
            select(users.c.password_hash)).scalar_one())

    assert (await stored()).startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert (await newer.login("yara@example.com")).status == 200
    assert (await stored()).startswith("$argon2id$v=19$m=16,t=2,p=1$")
    assert (await newer.login("yara@example.com")).status == 200


def test_policy_lists_every_broken_rule() -> None:
    """A short, common password containing the address's name part breaks all three
    rules, each reported; a good one breaks none; a 2-letter name part is not checked."""
    problems = password_problems("al", "al@example.com", min_length=10)
    assert len(problems) == 1
    everything = password_problems("monkey", "monkey@example.com", min_length=10)
    assert len(everything) == 3, everything
    assert password_problems("quiet-harbour-lights", "ann@example.com", min_length=10) == []
    assert password_problems("x" * 300, "ann@example.com", min_length=10) == [
        "must be at most 256 characters long"]
    assert password_problems("Alphabet-soup-1", "ALPHABET@example.com", min_length=10)


def test_common_list_is_shipped_and_used_without_its_header() -> None:
    """The package data file loads, holds lower-case entries and no comment lines."""
    common = common_passwords()
    assert len(common) > 200
    assert "password123" in common
    assert all(entry == entry.lower() and not entry.startswith("#") for entry in common)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_unknown_address_and_wrong_password_take_similar_time(
    make_stack: MakeStack,
) -> None:
    """With real argon2 work per attempt (16 MiB, 2 passes), the median time of a login
    with an unknown address is within a factor of two of one with a wrong password, and
    both are far from an instant refusal (so the unknown case does hash)."""
    stack = await make_stack(argon2_time_cost=2, argon2_memory_kib=16384, argon2_parallelism=1,
                             login_free_failures_per_account=1000,
                             login_free_failures_per_address=1000)
    await stack.register("zoe@example.com")

    async def timed(email: str) -> float:
        started = time.perf_counter()
        answer = await stack.login(email, "not-the-password-1")
        assert answer.status == 401
        return time.perf_counter() - started

    known: list[float] = []
    unknown: list[float] = []
    for n in range(7):
        known.append(await timed("zoe@example.com"))
        unknown.append(await timed(f"nobody{n}@example.com"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)
    hash_time = min(known)
    assert min(unknown) > hash_time / 3, (known, unknown)


def test_the_default_hashing_threads_leave_a_core_to_the_reactor() -> None:
    """``auth.password_threads = 0`` (the default) means one fewer than the CPUs this
    process may run on, between 1 and 4; a number given is used as it is."""
    cpus = len(os.sched_getaffinity(0))
    assert AuthSettings().password_threads == 0
    assert default_password_threads() == max(1, min(4, cpus - 1))
    hasher = PasswordHasher.from_settings(AuthSettings(password_threads=0))
    assert hasher._threads == default_password_threads()
    assert PasswordHasher.from_settings(AuthSettings(password_threads=3))._threads == 3
