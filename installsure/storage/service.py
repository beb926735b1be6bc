"""The storage service: a backend, and the thread pool every call to it runs on.

Backends block (disk, boto3), so nothing calls them on the reactor thread: ``run(fn,
...)`` calls ``fn`` on this service's own pool and returns a Deferred, as the Database
service does for queries. Starting prepares the backend (creates the directory, finds
the bucket); a backend that cannot be prepared is logged and reported by the health
check, and every call tries again, so storage that comes back later is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from installsure.storage.interface import StorageBackend, StorageError
from installsure.storage.local import LocalDirectory
from installsure.storage.settings import StorageSettings

T = TypeVar("T")

log = Logger(namespace="installsure.storage")


def build_backend(settings: StorageSettings, data_path: Path) -> StorageBackend:
    """The backend ``settings`` choose; a local one defaults to ``<data_path>/files``."""
    if settings.backend == "s3":
        from installsure.storage.s3 import S3Bucket

        return S3Bucket(settings)
    return LocalDirectory(Path(settings.local_path or data_path / "files"))


class Storage(Service):
    """A :class:`StorageBackend` behind a thread pool (see the module docstring)."""

    name = "storage"

    def __init__(self, backend: StorageBackend, *, threads: int = 8,
                 reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.backend = backend
        self._reactor = reactor
        self._threads = threads
        self._pool: ThreadPool | None = None
        self._trigger: Any = None
        #: Why the backend could not be prepared at start, until a call succeeds.
        self.startup_error: str | None = None

    # -- what callers use ------------------------------------------------------------

    def run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """``fn(*args)`` on the storage pool."""
        pool = self._pool
        if pool is None:
            return fail(StorageError("the storage service is not running"))
        return deferToThreadPool(self._reactor, pool, fn, *args)

    def delete(self, keys: Sequence[str]) -> Deferred[None]:
        return self.run(self.backend.delete, list(keys))

    def delete_stored_files(self, keys: Sequence[str]) -> Deferred[bool]:
        """Remove the stored bytes of ``keys`` (e.g. every file of a deleted project,
        see :func:`installsure.db.files.project_storage_keys`). Never fails: what could
        not be removed is logged; fires with whether everything went."""
        wanted = [key for key in keys if key]
        if not wanted:
            return succeed(True)

        def report(result: object) -> bool:
            if isinstance(result, Failure):
                log.warn(
                    "could not remove {count} stored files ({first}, ...): {error}",
                    count=len(wanted), first=wanted[0], error=result.getErrorMessage(),
                )
                return False
            return True

        return self.delete(wanted).addBoth(report)

    def health(self) -> Deferred[dict[str, object]]:
        """The backend's health facts with the round trip in ms; fails when unusable."""
        began = time.perf_counter()

        def timed(facts: dict[str, object]) -> dict[str, object]:
            self.startup_error = None
            return {**facts, "latencyMs": (time.perf_counter() - began) * 1000.0}

        return self.run(self.backend.health).addCallback(timed)

    # -- service life ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._pool = ThreadPool(minthreads=0, maxthreads=self._threads,
                                name="installsure-storage")
        self._pool.start()
        self._trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._stop_pool)
        self.run(self.backend.prepare).addCallbacks(self._prepared, self._not_prepared)

    def _prepared(self, _: object) -> None:
        self.startup_error = None
        log.info("file storage ready: {backend}", backend=self.backend.name)

    def _not_prepared(self, failure: Failure) -> None:
        self.startup_error = failure.getErrorMessage()
        log.error("file storage is not usable yet: {error}", error=self.startup_error)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self._stop_pool()

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if self._trigger is not None:
            with suppress(ValueError, KeyError):
                self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        if pool is not None:
            # Joins the threads: calls in progress (a write, a part upload) finish first.
            pool.stop()

