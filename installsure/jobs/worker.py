"""The worker service: one ``QueueWorker`` per queue, started and stopped together.

A queue's worker is made of separate parts, each in a module of its own:

* ``claiming.ClaimLoop`` claims jobs in batches as slots free up (a finished job's
  slot is free once Redis has its result), and blocks on the queue's marker list
  while the queue is empty (no polling);
* ``running.JobRunner`` runs each claimed job's processor with a timeout, and cancels
  it when its lease is lost;
* ``results.ResultFlusher`` reports completions and failures in batches flushed every
  ``flush_interval``, a report whose reply was lost sent again unchanged;
* ``leases.Heartbeat`` renews the worker's leases and liveness key every
  ``heartbeat_interval`` and as soon as Redis is back after an outage;
  ``leases.Sweeper`` returns the jobs of dead workers every ``sweeper_interval``
  (every node does this; the script makes it safe, and counts no stall right after
  an outage); ``lost.LostLeases`` logs and counts each lease lost once;
* ``outage.Outage`` paces each of them while Redis fails, and one ``outage.OutageLog``
  per service tells the operator once and ends every pause when Redis is back.

On stop a worker lets running jobs finish within ``grace`` and puts the rest back at
the head of the queue without spending an attempt (``queue_worker``). Stopping is
single: the drain and the service tree both ask, the second waits for the first.
"""

from __future__ import annotations

import os
import secrets
import socket
import unicodedata
from collections.abc import Callable, Sequence

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from installsure.jobs._deferreds import observe
from installsure.jobs.outage import OutageLog
from installsure.jobs.queue import JobQueue
from installsure.jobs.queue_worker import QueueWorker

log = Logger(namespace="installsure.jobs.worker")

MAX_WORKER_ID_LENGTH = 200


def default_worker_id() -> str:
    """host:pid:random — unique per process, readable in the admin API."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def check_worker_id(worker_id: object) -> str:
    """``worker_id`` if it is usable, else a TypeError or ValueError saying why.

    Any text goes into Redis safely (the scripts encode it); control characters are
    refused because the id is shown in log lines and the admin API, where a newline
    would forge a line.
    """
    if not isinstance(worker_id, str):
        raise TypeError(f"worker_id must be a string, not {type(worker_id).__name__}")
    if not worker_id:
        raise ValueError("worker_id must not be empty (leave it out for host:pid:random)")
    if len(worker_id) > MAX_WORKER_ID_LENGTH:
        raise ValueError(
            f"worker_id must be at most {MAX_WORKER_ID_LENGTH} characters, "
            f"not {len(worker_id)}"
        )
    for index, char in enumerate(worker_id):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(
                f"worker_id must not contain control characters or lone surrogates: "
                f"{worker_id!r} has {char!r} at index {index}"
            )
    return worker_id


class WorkerService(Service):
    """Runs the jobs of ``queues`` (default: every queue a registered type uses)."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        queues: Sequence[str] | None = None,
        grace: float = 30.0,
        worker_id: str | None = None,
        concurrency: dict[str, int] | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        if queues is None:
            queues = sorted({t.queue for t in queue.registry})
        for name in queues:
            queue.settings.queue(name)
        self.queue = queue
        self.queues = list(queues)
        self.grace = grace
        self.worker_id = default_worker_id() if worker_id is None else check_worker_id(worker_id)
        self._concurrency = concurrency or {}
        self._reactor: IReactorTime = reactor
        self.workers: dict[str, QueueWorker] = {}
        # The one stop in progress or done since the last start.
        self._stopped: Deferred[None] | None = None
        self._unhook: Callable[[], None] = lambda: None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._stopped = None
        outage = OutageLog()
        # A new connection means Redis may answer again: every paused loop tries now.
        self._unhook = self.queue.redis.on_connected(outage.back)
        for name in self.queues:
            worker = QueueWorker(
                self.queue, name, self.worker_id, self._reactor,
                concurrency=self._concurrency.get(name), outage=outage,
            )
            self.workers[name] = worker
            worker.start()
        log.info("worker {worker_id} runs queues {queues}",
                 worker_id=self.worker_id, queues=", ".join(self.queues))

    def stopService(self) -> Deferred[None]:
        """Drain every queue's worker, once: a second call (the drain hook, then the
        service tree's own stop) waits for the same drain instead of starting another."""
        if self._stopped is None:
            super().stopService()  # type: ignore[no-untyped-call]
            self._unhook()
            workers, self.workers = list(self.workers.values()), {}
            stopping = [Deferred.fromCoroutine(w.stop(self.grace)) for w in workers]
            d = defer.gatherResults(stopping, consumeErrors=True)
            d.addErrback(lambda f: log.failure("draining the workers failed", f))
            self._stopped = d.addCallback(self._drained)
        return observe(self._stopped)

    def _drained(self, _: object) -> None:
        log.info("worker {worker_id} stopped", worker_id=self.worker_id)
