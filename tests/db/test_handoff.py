"""The batched handoff to the database pool: one handoff per reactor turn, each call
with its own outcome, nothing held back behind a slow call, nothing lost at a stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from installsure.db.handoff import RETURN_EVERY, BatchedHandoff


class CountingPool(ThreadPool):
    """A real thread pool that counts the jobs it is handed."""

    handed = 0

    def callInThread(self, func: Any, *args: Any, **kw: Any) -> None:
        self.handed += 1
        super().callInThread(func, *args, **kw)


@pytest.fixture
def pool() -> Iterator[CountingPool]:
    made = CountingPool(minthreads=0, maxthreads=3, name="test-handoff")
    made.start()
    yield made
    made.stop()


@pytest_twisted.ensureDeferred
async def test_calls_of_one_turn_are_handed_over_together_each_with_its_outcome(
    pool: CountingPool,
) -> None:
    """Forty calls made in one reactor turn reach the pool as at most one job per lane,
    run on pool threads, and each Deferred gets its own result or its own exception."""
    handoff = BatchedHandoff(reactor, pool, lanes=3)
    threads: set[str] = set()

    def work(n: int) -> int:
        threads.add(threading.current_thread().name)
        if n % 10 == 7:
            raise ValueError(f"call {n} fails")
        return n * n

    calls = [handoff.submit(work, n) for n in range(40)]
    outcomes = await defer.DeferredList(calls, consumeErrors=True)
    assert pool.handed <= 3
    assert threading.current_thread().name not in threads
    for n, (succeeded, result) in enumerate(outcomes):
        if n % 10 == 7:
            assert not succeeded
            assert isinstance(result, Failure)
            assert str(result.value) == f"call {n} fails"
        else:
            assert (succeeded, result) == (True, n * n)
    later = await handoff.submit(work, 5)
    assert later == 25
    assert pool.handed <= 4


@pytest_twisted.ensureDeferred
async def test_a_slow_call_does_not_hold_back_the_answers_before_it(
    pool: CountingPool,
) -> None:
    """On one lane, a quick call's answer arrives while the slow call after it still
    runs (answers go back every few milliseconds, not only when the batch is done)."""
    handoff = BatchedHandoff(reactor, pool, lanes=1)
    release = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "slow"

    def quick() -> str:
        time.sleep(RETURN_EVERY * 2)
        return "quick"

    first = handoff.submit(quick)
    second = handoff.submit(slow)
    assert await first == "quick"
    assert not second.called
    release.set()
    assert await second == "slow"


@pytest_twisted.ensureDeferred
async def test_a_cancelled_call_is_dropped_quietly(pool: CountingPool) -> None:
    """A caller that cancels while its call runs gets CancelledError; the call's late
    result goes nowhere and the other calls of the batch still get theirs."""
    handoff = BatchedHandoff(reactor, pool, lanes=1)
    release = threading.Event()
    waiting = handoff.submit(lambda: release.wait(10) and "late")
    other = handoff.submit(lambda: "other")
    await task.deferLater(reactor, 0.05, lambda: None)
    waiting.cancel()
    with pytest.raises(defer.CancelledError):
        await waiting
    release.set()
    assert await other == "other"


def test_calls_not_handed_over_yet_fail_when_the_pool_goes(pool: CountingPool) -> None:
    """Calls queued in the current turn fail with the reason given when the handoff is
    stopped before it hands them over; the pool is never asked to run them."""
    clock = task.Clock()
    handoff = BatchedHandoff(clock, pool, lanes=2)
    queued = [handoff.submit(lambda: "never") for _ in range(3)]
    handoff.fail_queued(Failure(RuntimeError("stopped")))
    clock.advance(1)
    for d in queued:
        failure = d.result
        d.addErrback(lambda _: None)
        assert isinstance(failure, Failure)
        assert str(failure.value) == "stopped"
    assert pool.handed == 0
