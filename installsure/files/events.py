"""The project's file event: ``installsure.project.<projectId>.file`` (API.md, realtime).

Sent when a file of a project is added or deleted (processors add ``processed`` and
``failed``). They go to the process's domain event publisher
(``installsure.events.DomainEventPublisher``).
"""

from __future__ import annotations

from typing import Any


def project_file_topic(project_id: str) -> str:
    return f"installsure.project.{project_id}.file"


def file_event(action: str, file: dict[str, Any]) -> dict[str, Any]:
    """``{"action": "added"|"deleted"|..., "fileId", "projectId", "file": <File JSON>}``."""
    return {"action": action, "fileId": file["id"], "projectId": file["projectId"],
            "file": file}
