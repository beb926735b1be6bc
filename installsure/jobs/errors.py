"""Exceptions of the job runner: what processors raise and what callers catch."""

from __future__ import annotations

from collections.abc import Sequence


class PermanentError(Exception):
    """Raised by a processor: this job can never succeed, do not retry it."""


class RetryLater(Exception):  # noqa: N818 - it is an instruction, not an error
    """Raised by a processor: run this job again after ``delay`` seconds.

    The attempt is not spent (e.g. an outside service asked us to come back later).
    """

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay} s")
        self.delay = max(0.0, float(delay))
        self.reason = reason


class LeaseLost(Exception):  # noqa: N818 - it says what happened, like RetryLater
    """Raised inside a processor whose lease was lost (the job stalled and runs
    elsewhere now): ``ctx.once`` refuses to start a step, so a superseded run does not
    repeat an effect beside the run that replaced it."""


class JobsError(Exception):
    """Base of the errors callers of the producer and admin APIs may get."""


class UnknownQueue(JobsError):  # noqa: N818
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"no queue named {name!r}; known queues: {', '.join(known)}")
        self.name = name


class UnknownJobType(JobsError):  # noqa: N818
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(
            f"no job type named {name!r} is registered; known types: {', '.join(known)}"
        )
        self.name = name


class InvalidPayload(JobsError):  # noqa: N818
    """The payload does not match the job type's schema; ``problems`` lists every field."""

    def __init__(self, job_type: str, problems: Sequence[str]) -> None:
        super().__init__(
            f"invalid payload for job type {job_type!r}: " + "; ".join(problems)
        )
        self.job_type = job_type
        self.problems = list(problems)


class InvalidOption(JobsError):  # noqa: N818
    """An enqueue option (delay, priority, attempts, ...) is out of range."""


class JobNotFound(JobsError):  # noqa: N818
    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} in queue {queue!r} (it may have been removed)")
        self.queue = queue
        self.job_id = job_id


class JobStateConflict(JobsError):  # noqa: N818
    """The job is in a state that does not allow the operation (e.g. removing an active job)."""

    def __init__(self, queue: str, job_id: str, state: str, operation: str) -> None:
        super().__init__(f"cannot {operation} job {job_id!r} of queue {queue!r}: it is {state}")
        self.queue = queue
        self.job_id = job_id
        self.state = state


class InvalidState(JobsError):  # noqa: N818
    def __init__(self, state: str, allowed: Sequence[str]) -> None:
        super().__init__(f"unknown job state {state!r}; use one of {', '.join(allowed)}")
        self.state = state
