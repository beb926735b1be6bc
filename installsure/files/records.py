"""The File JSON of API.md, made from a database row."""

from __future__ import annotations

import datetime as dt
from typing import Any

from attrs import frozen

from installsure.db.files import FileRow


@frozen
class FileRecord:
    """A stored file: its name as uploaded, what it is, where processing stands."""

    id: str
    project_id: str | None
    original_name: str
    mime_type: str
    extension: str
    size: int
    sha256: str
    status: str
    metadata: dict[str, Any] | None
    thumbnail_url: str | None
    uploaded_by: str | None
    created_at: dt.datetime
    processed_at: dt.datetime | None
    error: str | None

    @classmethod
    def of(cls, row: FileRow) -> FileRecord:
        return cls(
            id=row.id, project_id=row.project_id, original_name=row.original_name,
            mime_type=row.mime_type, extension=row.extension, size=row.size,
            sha256=row.sha256, status=row.status,
            metadata=row.metadata if isinstance(row.metadata, dict) else None,
            thumbnail_url=f"/api/files/{row.id}/thumbnail" if row.thumbnail_key else None,
            uploaded_by=row.uploaded_by, created_at=row.created_at,
            processed_at=row.processed_at, error=row.error,
        )


@frozen
class FileStatsRecord:
    """Counts over the files the caller may see (of one project, with ``projectId``)."""

    #: The number of files (the old API's name; the same as ``totalFiles``).
    total: int
    total_files: int
    #: Bytes stored, over all those files.
    total_size: int
    #: Files per extension, e.g. ``{"ifc": 3, "pdf": 12}``.
    by_type: dict[str, int]
    #: Files per status (``uploaded``, ``processing``, ``processed``, ``failed``).
    by_status: dict[str, int]
    #: The newest files, newest first (at most 5).
    recent_uploads: list[FileRecord]
    #: Files not processed yet: status ``uploaded`` or ``processing``.
    processing_queue: int
