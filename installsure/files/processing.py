"""The ``file-processing`` job: what is queued for every uploaded file.

Its processor (metadata, thumbnails, IFC quantities) comes with the processors; until
then the job type is registered with a placeholder that logs and completes, so queued
jobs do not pile up, and the file keeps its status ``uploaded``. The payload carries what
a processor needs without a database read first; ``file_id`` also routes the job's
progress to ``installsure.file.<fileId>.progress``.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.logger import Logger

from installsure.jobs import JobContext, JobType

log = Logger(namespace="installsure.files.processing")

FILE_PROCESSING = "file-processing"


@frozen
class FileProcessing:
    """The payload of a ``file-processing`` job."""

    file_id: str
    project_id: str | None
    storage_key: str
    extension: str
    mime_type: str
    size: int
    sha256: str


def _not_yet(payload: Any, _ctx: JobContext) -> None:
    log.info("file {file_id} queued for processing; no processor is installed yet, so it "
             "stays uploaded", file_id=getattr(payload, "file_id", None))


def file_processing_job_type(processor: Any = None) -> JobType:
    """The job type, with ``processor`` (or the placeholder) on queue file-processing."""
    return JobType(name=FILE_PROCESSING, payload_type=FileProcessing,
                   processor=processor or _not_yet, queue=FILE_PROCESSING)
