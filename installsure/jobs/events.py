"""Job events: every transition goes to a publisher (the realtime layer implements it).

Topics (API.md): ``installsure.queue.<queue>.job`` for job state changes,
``installsure.queue.<queue>.status`` for queue counts (at most once per
``status_interval`` while they change) and ``installsure.file.<fileId>.progress`` for
the progress of jobs whose payload names a file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="installsure.jobs.events")


def job_topic(queue: str) -> str:
    return f"installsure.queue.{queue}.job"


def status_topic(queue: str) -> str:
    return f"installsure.queue.{queue}.status"


def file_progress_topic(file_id: str) -> str:
    return f"installsure.file.{file_id}.progress"


class JobEventPublisher(Protocol):
    """Where job events go. Must not block and must not raise."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None: ...


class LoggingJobEventPublisher:
    """Writes events to the log, until the realtime layer publishes them for real."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        log.debug("event {topic} {payload}", topic=topic, payload=payload)


class NullJobEventPublisher:
    """Drops events (benchmarks, tests that do not look at them)."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        pass


class RecordingJobEventPublisher:
    """Keeps events in a list: a testing double."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.events.append((topic, payload))


class QueueJobEvents:
    """The job topic of one queue, as the worker's parts publish to it.

    ``transition`` is for the events of every job's life (active, completed, failed...)
    that the ``job_events`` setting turns off under heavy load; ``announce`` is for the
    rarer ones that are always published (stalls, jobs given back, progress).
    """

    def __init__(self, publisher: JobEventPublisher, queue: str, transitions: bool) -> None:
        self.publisher = publisher
        self.topic = job_topic(queue)
        self.transitions = transitions

    def transition(self, job_id: str, job_type: str, state: str, **extra: Any) -> None:
        if self.transitions:
            self.announce({"jobId": job_id, "type": job_type, "state": state, **extra})

    def announce(self, payload: dict[str, Any]) -> None:
        self.publisher.publish(self.topic, payload)


class StatusReporter:
    """Publishes a queue's counts when they change, at most once per ``interval``.

    ``changed(queue)`` is cheap and may be called on every transition; nothing runs
    while no queue changes, so an idle process schedules no timers.
    """

    def __init__(
        self,
        fetch: Callable[[str], Deferred[dict[str, Any]]],
        publisher: JobEventPublisher,
        interval: float,
        reactor: IReactorTime,
    ) -> None:
        self._fetch = fetch
        self._publisher = publisher
        self._interval = interval
        self._reactor = reactor
        self._dirty: set[str] = set()
        self._last = -interval
        self._call: IDelayedCall | None = None
        self._stopped = False

    def changed(self, queue: str) -> None:
        if self._stopped:
            return
        self._dirty.add(queue)
        if self._call is None or not self._call.active():
            wait = max(0.0, self._last + self._interval - self._reactor.seconds())
            self._call = self._reactor.callLater(wait, self._report)

    def stop(self) -> None:
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _report(self) -> None:
        self._last = self._reactor.seconds()
        queues, self._dirty = self._dirty, set()
        for queue in sorted(queues):
            d = self._fetch(queue)
            d.addCallback(self._publish, queue)
            # Counts are advisory: a failure is logged and the next change reports again.
            d.addErrback(self._failed, queue)

    def _publish(self, counts: dict[str, Any], queue: str) -> None:
        self._publisher.publish(status_topic(queue), counts)

    def _failed(self, failure: Failure, queue: str) -> None:
        log.warn(
            "could not read the counts of queue {queue}: {error}",
            queue=queue, error=failure.getErrorMessage(),
        )
