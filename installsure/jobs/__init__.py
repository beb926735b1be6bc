"""The durable job runner: producer API, worker service, job type registry.

See DESIGN.md "Job runner semantics" and issue 3.
"""

from installsure.jobs.backoff import BackoffPolicy
from installsure.jobs.context import JobContext
from installsure.jobs.errors import (
    InvalidOption,
    InvalidPayload,
    InvalidState,
    JobNotFound,
    JobsError,
    JobStateConflict,
    LeaseLost,
    PermanentError,
    RetryLater,
    UnknownJobType,
    UnknownQueue,
)
from installsure.jobs.events import JobEventPublisher, LoggingJobEventPublisher
from installsure.jobs.model import JobRecord, QueueCounts
from installsure.jobs.producer import JobSpec
from installsure.jobs.queue import JobQueue
from installsure.jobs.registry import JobRegistry, JobType
from installsure.jobs.settings import JobsSettings, QueueSettings
from installsure.jobs.worker import WorkerService

__all__ = [
    "BackoffPolicy",
    "InvalidOption",
    "InvalidPayload",
    "InvalidState",
    "JobContext",
    "JobEventPublisher",
    "JobNotFound",
    "JobQueue",
    "JobRecord",
    "JobRegistry",
    "JobSpec",
    "JobStateConflict",
    "JobType",
    "JobsError",
    "JobsSettings",
    "LeaseLost",
    "LoggingJobEventPublisher",
    "PermanentError",
    "QueueCounts",
    "QueueSettings",
    "RetryLater",
    "UnknownJobType",
    "UnknownQueue",
    "WorkerService",
]
