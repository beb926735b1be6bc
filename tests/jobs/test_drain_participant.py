"""The job workers in a shutdown (installsure.service.WorkersDrain), on a real Redis:
they run on through the delay, get the rest of the grace, and what still runs is put
back and counted."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor

from installsure.drain import DrainService
from installsure.jobs.context import JobContext
from installsure.service import WorkersDrain
from tests.http.helpers import captured_events
from tests.jobs.conftest import Echo, Harness, sleep, wait_until


@pytest_twisted.ensureDeferred
async def test_a_job_longer_than_the_grace_goes_back_unspent_and_is_counted(
    harness: Harness,
) -> None:
    """With shutdown.grace 1.5 s and a delay of 0.5 s: the running job is counted in the
    first phase line, keeps running through the delay, is given back when the rest of
    the grace runs out (waiting, no attempt spent), and the last line counts it
    returned."""
    hangs: list[defer.Deferred[str]] = []

    def run(_p: Echo, _ctx: JobContext) -> defer.Deferred[str]:
        hangs.append(defer.Deferred())
        return hangs[-1]

    harness.handlers["echo"] = run
    job_id = await harness.queue.enqueue("echo", Echo(1), attempts=2)
    workers = harness.worker()
    harness.services.remove(workers)  # the drain stops it
    await wait_until(lambda: len(hangs) == 1)
    drain = DrainService(grace=1.5, delay=0.5, reactor=reactor)
    drain.add(WorkersDrain(workers, reactor))
    drain.startService()
    started = reactor.seconds()
    with captured_events("") as events:
        stopping = drain.stopService()
        await sleep(0.3)
        record = await harness.queue.get("test", job_id)
        assert record.state == "active", "the job stopped during the delay"
        await stopping
    took = reactor.seconds() - started
    assert 1.3 < took < 8.0
    record = await harness.queue.get("test", job_id)
    assert (record.state, record.attempts_made) == ("waiting", 0)

    def field(prefix: str, name: str) -> Any:
        return next(e[name] for e in events if str(e["log_format"]).startswith(prefix))

    assert field("shutdown 1/4", "jobs") == 1
    assert field("shutdown: work finished", "jobs_returned") == 1
    assert workers.grace < 1.5, "the workers got more than the rest of the grace"
