"""The project's file event: ``installsure.project.<projectId>.file`` (API.md, realtime).

Sent when a file of a project is added or deleted (processors add ``processed`` and
``failed``). The publisher is an interface of the shape every event hook of InstallSure
has (``publish(topic, payload)``, never blocking, never raising); until the realtime
broker implements it, events are logged.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.logger import Logger

log = Logger(namespace="installsure.files.events")


class EventPublisher(Protocol):
    """Where domain events go. Must not block and must not raise."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None: ...


class LoggingEventPublisher:
    """Writes events to the log, until the realtime layer publishes them for real."""

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        log.debug("event {topic} {payload}", topic=topic, payload=payload)


def project_file_topic(project_id: str) -> str:
    return f"installsure.project.{project_id}.file"


def file_event(action: str, file: dict[str, Any]) -> dict[str, Any]:
    """``{"action": "added"|"deleted"|..., "fileId", "projectId", "file": <File JSON>}``."""
    return {"action": action, "fileId": file["id"], "projectId": file["projectId"],
            "file": file}
