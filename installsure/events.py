"""Domain events: what changed in projects (and later files), as topic + payload.

The API publishes each change here after its transaction commits; the realtime broker
implements :class:`DomainEventPublisher` to deliver the events to WAMP subscribers of
the topic. Until it does, :class:`LoggingDomainEventPublisher` writes them to the log.

Topics (the contract's realtime table), all under ``installsure.project.<projectId>.``:

``updated``
    ``{"type": "project.updated", "projectId", "version", "changes", "project",
    "actor"}``: ``changes`` is ``{field: [before, after]}`` in wire (camelCase) names,
    ``project`` the project's JSON after the change, ``actor`` ``{"id", "name"}``.
``deleted``
    ``{"type": "project.deleted", "projectId", "actor"}``.
``member``
    ``{"type": "member.added" | "member.role_changed" | "member.removed",
    "projectId", "userId", "role", "previousRole", "actor"}`` (``role`` is None once
    removed, ``previousRole`` None when added).

Publishing must never block the reactor nor fail the request that caused it: a
publisher that raises is a bug in the publisher, so :class:`SafePublisher` logs it and
carries on.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from twisted.logger import Logger

log = Logger(namespace="installsure.events.domain")

ProjectEvent = Literal["updated", "deleted", "member", "file"]


def project_topic(project_id: str, event: ProjectEvent) -> str:
    """``installsure.project.<projectId>.<event>``."""
    return f"installsure.project.{project_id}.{event}"


class DomainEventPublisher(Protocol):
    """Where domain events go. ``publish`` must not block and must not raise."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None: ...


class LoggingDomainEventPublisher:
    """Writes events to the log (debug), until the realtime broker delivers them."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        log.debug("event {topic} {payload}", topic=topic, payload=payload)


class RecordingDomainEventPublisher:
    """Keeps events in a list: a testing double."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.events.append((topic, payload))

    def topics(self) -> list[str]:
        return [topic for topic, _payload in self.events]


class SafePublisher:
    """Wraps a publisher so that its failures are logged, never raised to the caller
    (a change that committed must be answered as done, whatever the broker does)."""

    def __init__(self, inner: DomainEventPublisher) -> None:
        self.inner = inner

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self.inner.publish(topic, payload)
        except Exception:
            log.failure("publishing {topic} failed; the event is lost", topic=topic)
