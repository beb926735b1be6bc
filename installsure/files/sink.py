"""One uploaded file on its way into storage: hashed and written off the reactor thread.

Chunks of the file arrive on the reactor thread as the multipart parser finds them;
:class:`FileSink` gathers them and hands them to the storage pool about a megabyte at a
time, one job after the other (so the SHA-256 sees the bytes in order), each job
hashing and writing its chunks. Nothing is written before the sink's ``gate`` fires
(the upload is authorized): until then chunks wait, and the bytes waiting anywhere
are reported through ``pressure`` so the upload can stop reading the connection.
``commit`` makes the object appear whole; ``abort`` removes every trace of it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from installsure.storage.interface import ObjectWriter, StorageError
from installsure.storage.service import Storage

#: Bytes gathered before a write job is handed to the pool.
FLUSH_SIZE = 1024 * 1024

Job = Callable[[], Any]


class FileSink:
    """See the module docstring. ``pressure(delta)`` is told of every byte that starts
    or stops waiting to be written."""

    def __init__(self, storage: Storage, key: str, gate: Deferred[None],
                 pressure: Callable[[int], None]) -> None:
        self._storage = storage
        self.key = key
        self._pressure = pressure
        self._hash = hashlib.sha256()
        self._writer: ObjectWriter | None = None
        self._chunks: list[bytes] = []
        self._gathered = 0
        self._jobs: deque[tuple[Job, int]] = deque()
        self._busy = False
        self._open = False  # the gate has fired
        self._error: Failure | None = None
        self._aborted = False
        self._committed = False
        self._commit_waiters: list[Deferred[str]] = []
        #: Bytes written into the sink so far (all of the file once it is complete).
        self.size = 0
        gate.addCallback(self._opened)

    # -- the reactor's side --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._aborted:
            return
        self.size += len(data)
        self._chunks.append(data)
        self._gathered += len(data)
        self._pressure(len(data))
        if self._gathered >= FLUSH_SIZE:
            self._flush()

    def commit(self) -> Deferred[str]:
        """Write what is left and commit; fires with the SHA-256 (hex) of the bytes."""
        done: Deferred[str] = Deferred()
        if self._error is not None:
            done.errback(self._error)
            return done
        self._commit_waiters.append(done)
        self._flush()
        self._jobs.append((self._commit_blocking, 0))
        self._run_next()
        return done

    def abort(self) -> None:
        """Discard the file: queued chunks are dropped, a partial or committed object
        removed (after the job running now, if any)."""
        if self._aborted:
            return
        self._aborted = True
        dropped = self._gathered + sum(size for _job, size in self._jobs)
        self._chunks, self._gathered = [], 0
        self._jobs.clear()
        if dropped:
            self._pressure(-dropped)
        self._jobs.append((self._abort_blocking, 0))
        self._open = True  # nothing is written any more; removal may run at once
        self._run_next()

    def _flush(self) -> None:
        if not self._chunks:
            return
        chunks, size = self._chunks, self._gathered
        self._chunks, self._gathered = [], 0
        self._jobs.append((lambda: self._write_blocking(chunks), size))
        self._run_next()

    def _opened(self, _: object) -> None:
        self._open = True
        self._run_next()

    def _run_next(self) -> None:
        if self._busy or not self._jobs or not self._open:
            return
        job, size = self._jobs.popleft()
        self._busy = True
        d = self._storage.run(job)
        d.addCallbacks(self._job_done, self._job_failed, callbackArgs=(job, size),
                       errbackArgs=(size,))

    def _job_done(self, result: Any, job: Job, size: int) -> None:
        self._busy = False
        if size:
            self._pressure(-size)
        if job == self._commit_blocking:
            waiters, self._commit_waiters = self._commit_waiters, []
            for waiter in waiters:
                waiter.callback(result)
        self._run_next()

    def _job_failed(self, failure: Failure, size: int) -> None:
        self._busy = False
        if size:
            self._pressure(-size)
        if self._error is None:
            self._error = failure
        waiters, self._commit_waiters = self._commit_waiters, []
        for waiter in waiters:
            waiter.errback(failure)
        if not self._aborted:
            self.abort()
        else:
            self._run_next()

    # -- the storage pool's side -----------------------------------------------------

    def _write_blocking(self, chunks: list[bytes]) -> None:
        if self._writer is None:
            self._writer = self._storage.backend.create(self.key)
        for chunk in chunks:
            self._hash.update(chunk)
            self._writer.write(chunk)

    def _commit_blocking(self) -> str:
        if self._writer is None:
            self._writer = self._storage.backend.create(self.key)
        self._writer.commit()
        self._committed = True
        return self._hash.hexdigest()

    def _abort_blocking(self) -> None:
        writer, self._writer = self._writer, None
        try:
            if writer is not None and not self._committed:
                writer.abort()
        finally:
            if self._committed:
                self._storage.backend.delete([self.key])


__all__ = ["FLUSH_SIZE", "FileSink", "StorageError"]
