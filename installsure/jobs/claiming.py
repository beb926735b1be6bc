"""The claim loop: takes jobs of one queue from Redis in batches, as slots free up.

Claims ask for up to min(free slots, batch size) jobs per script call. When the queue is
empty the loop blocks on the queue's marker list, on a connection of its own, until an
enqueue pushes it (no polling) or the next delayed job is due. With two lanes, the
second keeps a claim in flight while there is work, so Redis prepares the next batch
while this process runs the current one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.jobs.keys import QueueKeys
from installsure.jobs.outage import Outage
from installsure.jobs.scripts import Scripts
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.wire import ClaimDecoder, ClaimedJob, UnreadableClaimReplyError
from installsure.redis.interfaces import BlockingRedis

log = Logger(namespace="installsure.jobs.worker")

_SHORTEST_SLEEP = 0.001
_SHORTEST_LIMITED_WAIT = 0.005


class ClaimLoop:
    """Claims the jobs of one queue for one worker (module docstring).

    ``running()`` says how many jobs run here and ``reporting()`` how many finished
    ones wait for Redis to take their result: both hold leases. At most ``concurrency``
    jobs run, and at most ``concurrency`` plus one claim batch leases are held, so a
    batch of results on its way to Redis does not stop the next claim, but results
    that Redis does not take (it is away) soon do. ``hurry()`` asks for the waiting
    results to be reported now, when they are what keeps the loop from claiming.
    ``start_jobs(jobs, now)`` is handed every claimed batch; ``slot_freed()`` is called
    whenever a slot may have come free (a job stopped, results were reported).
    """

    def __init__(
        self,
        queue: str,
        worker_id: str,
        *,
        concurrency: int,
        scripts: Scripts,
        keys: QueueKeys,
        settings: JobsSettings,
        queue_settings: QueueSettings,
        decoder: ClaimDecoder,
        reactor: IReactorTime,
        outage: Outage,
        connect_blocking: Callable[[], BlockingRedis],
        running: Callable[[], int],
        reporting: Callable[[], int],
        hurry: Callable[[], None],
        start_jobs: Callable[[Sequence[ClaimedJob], float], None],
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self.concurrency = concurrency
        self._scripts = scripts
        self._keys = keys
        self._settings = settings
        self._qs = queue_settings
        self._decoder = decoder
        self._reactor = reactor
        self._outage = outage
        self._connect_blocking = connect_blocking
        self._running = running
        self._reporting = reporting
        self._hurry = hurry
        self._start_jobs = start_jobs
        self._blocking: BlockingRedis | None = None
        self._waits: set[Deferred[Any]] = set()
        # Free slots taken by claims in flight; waiters for a free slot / for work.
        self._reserved = 0
        self._slot_waiters: list[Deferred[None]] = []
        self._work_waiters: list[Deferred[None]] = []
        self._lanes = 2 if concurrency >= 2 else 1
        self._per_lane = max(1, min(settings.batch_size, -(-concurrency // self._lanes)))
        # One claim batch of leases beyond concurrency: results on their way to Redis.
        self._batch = min(settings.batch_size, concurrency)
        self._loops: list[Deferred[None]] = []
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        self._stopping = False
        self._blocking = self._connect_blocking()
        for lane in range(self._lanes):
            loop = Deferred.fromCoroutine(self._claim_loop(lane))
            loop.addErrback(
                lambda f: log.failure("claim loop of {queue} died", f, queue=self._queue)
            )
            self._loops.append(loop)

    async def stop(self) -> None:
        """Stop claiming: interrupt every wait and let the claims in flight land."""
        self._stopping = True
        for d in list(self._waits):
            d.cancel()
        _wake(self._slot_waiters)
        _wake(self._work_waiters)
        for loop in self._loops:
            await loop
        self._loops = []

    async def close(self) -> None:
        """Close the connection the loop blocked on (after ``stop``)."""
        if self._blocking is not None:
            blocking, self._blocking = self._blocking, None
            try:
                await blocking.close()
            except Exception as e:  # closing a dead connection may fail; nothing to do
                log.debug("closing the blocking connection failed: {error}", error=e)

    def slot_freed(self) -> None:
        if self._slot_waiters:
            _wake(self._slot_waiters)

    # --- claiming

    async def _claim_loop(self, lane: int) -> None:
        """Lane 0 waits for work when the queue is empty; lane 1 keeps a second claim
        in flight while there is work.

        A claim that failed may have run in Redis with its reply lost: it is sent again
        with the same token base and the same count (whatever the free slots: those
        jobs are leased to this worker already), and the script answers with the jobs
        it leased then, so no lease is left that nobody renews.
        """
        unanswered: tuple[str, int] | None = None  # (token base, count) of a failed claim
        while not self._stopping:
            if unanswered is not None:
                base, count = unanswered
            else:
                free = self._free()
                if free <= 0:
                    if self._reporting():
                        self._hurry()
                    await self._wait_for(self._slot_waiters)
                    continue
                base, count = secrets.token_hex(6) + ":", min(free, self._per_lane)
            self._reserved += count
            try:
                text = await self._claim(count, base, again=unanswered is not None)
            except Exception as e:  # any failure: pause, then try again
                self._reserved -= count
                unanswered = (base, count)
                if self.stopping:  # (the property: mypy takes the field for False here)
                    return
                self._outage.failed(e)
                await self._pause()
                continue
            unanswered = None
            self._reserved -= count
            self._outage.succeeded()
            try:
                reply = self._decoder.decode(text)
            except UnreadableClaimReplyError:
                # A claim script of another version may be loaded: say so, do not spin.
                log.error("unreadable claim reply from Redis for {queue}: {reply}",
                          queue=self._queue, reply=repr(text)[:200])
                await self._sleep(self._settings.idle_wait)
                continue
            if reply.status == "ok" and reply.jobs:
                self._start_jobs(reply.jobs, reply.now)
                _wake(self._work_waiters)
                continue
            if reply.status == "limited":
                await self._sleep(max(_SHORTEST_LIMITED_WAIT, reply.reopens_in / 1000.0))
                continue
            if lane != 0:
                await self._wait_for(self._work_waiters)
                continue
            timeout = self._settings.idle_wait
            if reply.due is not None:
                timeout = min(timeout, max(0.0, (reply.due - reply.now) / 1000.0))
            if reply.status == "ok" and timeout > 0:
                await self._block(timeout)
            elif reply.status == "paused":
                await self._block(self._settings.idle_wait)
            else:
                await self._sleep(max(timeout, _SHORTEST_SLEEP))

    def _free(self) -> int:
        """Jobs a claim may take now (class docstring)."""
        taken = self._running() + self._reserved
        return min(
            self.concurrency - taken,
            self.concurrency + self._batch - taken - self._reporting(),
        )

    def _claim(self, count: int, base: str, *, again: bool) -> Deferred[Any]:
        qs = self._qs
        return self._scripts.claim(
            [self._keys.base],
            [
                count,
                self._worker_id,
                round(self._settings.lease_ttl * 1000),
                base,
                qs.rate_limit_count,
                round(qs.rate_limit_period * 1000),
                qs.priority_aging * 1000,
                "1" if again else "0",
            ],
        )

    async def _wait_for(self, waiters: list[Deferred[None]]) -> None:
        # stop() wakes the waiters once; a loop that comes here after that (its claim was
        # in flight during stop) must not wait for a wake-up that will never come.
        if self._stopping:
            return
        d: Deferred[None] = Deferred()
        waiters.append(d)
        await d

    async def _block(self, seconds: float) -> None:
        """Wait for the marker an enqueue pushes, at most ``seconds``."""
        if self._stopping or self._blocking is None:
            return
        seconds = max(0.01, round(seconds, 3))
        failed = await self._interruptible(
            self._blocking.execute("BLPOP", self._keys.marker, seconds, timeout=seconds + 5.0)
        )
        if failed is not None and not self._stopping:
            self._outage.failed(failed)
            await self._pause()

    async def _pause(self) -> None:
        """The outage pause: over early when Redis answers again."""
        if not self._stopping:
            await self._interruptible(self._outage.pause(self._reactor))

    async def _sleep(self, seconds: float) -> None:
        if not self._stopping:
            await self._interruptible(task.deferLater(self._reactor, seconds))

    async def _interruptible(self, d: Deferred[Any]) -> Exception | None:
        """Await ``d``, which stop() cancels; returns the error it failed with, if any."""
        self._waits.add(d)
        try:
            await d
        except CancelledError:
            return None
        except Exception as e:  # the caller decides what a failure means
            return e
        finally:
            self._waits.discard(d)
        return None


def _wake(waiters: list[Deferred[None]]) -> None:
    ready = list(waiters)
    waiters.clear()
    for d in ready:
        d.callback(None)
