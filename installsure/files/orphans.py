"""The orphan sweeper: stored objects that no file record names are deleted.

A file's bytes are stored before its record commits and removed after its record is
deleted (:mod:`installsure.files.library`), so a crash in between, or a delete whose
bytes could not be removed, leaves an object that no row names: it is never served and
only costs space. Every ``storage.orphan_sweep_interval`` the sweeper

1. lists the stored objects a page at a time (on the storage pool),
2. keeps those written more than ``storage.orphan_min_age`` ago and shaped like the
   keys files are stored under (:func:`~installsure.files.keys.is_file_key`: objects of
   other programs sharing the bucket are never touched),
3. asks the database which of them a file row names, as its bytes or its thumbnail (on
   the database pool, one read-only transaction per page),
4. and deletes the rest (on the storage pool).

Whatever fails ends the sweep and deletes nothing more: with the database unreachable
nothing is known to be unreferenced, so nothing is deleted. The next sweep starts over.
Deleted objects are counted in ``installsure_storage_orphans_swept_total``; a sweep that
deleted something logs one line with the counts, one that failed a warning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from attrs import frozen
from sqlalchemy import Connection
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from installsure import metrics
from installsure.db import files as repository
from installsure.db.service import Database
from installsure.files.keys import is_file_key
from installsure.storage.interface import StoredObject
from installsure.storage.service import Storage

log = Logger(namespace="installsure.files.orphans")

SWEPT = metrics.counter(
    "installsure_storage_orphans_swept",
    "Stored objects deleted by the orphan sweeper because no file record names them.",
    ("backend",),
)

#: Objects looked at per step: one database question and one delete per page (two IN
#: lists of this many keys stay under SQLite's oldest limit of 999 parameters each).
PAGE_SIZE = 500


@frozen
class SweepReport:
    """What one sweep did."""

    #: Objects listed (all of them, young and foreign ones too).
    listed: int
    #: Old enough and shaped like a file's key: asked about.
    checked: int
    deleted: int
    deleted_bytes: int
    seconds: float
    #: Why the sweep ended early (nothing more was deleted), or None.
    error: str | None = None


def _take(listing: Iterator[StoredObject], count: int) -> list[StoredObject]:
    return list(islice(listing, count))


def _named_among(keys: list[str]) -> Callable[[Connection], set[str]]:
    return lambda connection: repository.referenced_keys(connection, keys)


class OrphanSweeper:
    """One sweep at a time over ``storage``, asking ``database`` (see the module
    docstring). ``clock`` tells the time objects' ages are measured against: wall-clock
    seconds (the reactor's ``seconds()``)."""

    def __init__(self, database: Database, storage: Storage, *, min_age: float,
                 clock: Any = None, page_size: int = PAGE_SIZE) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.database = database
        self.storage = storage
        self.min_age = min_age
        self.clock = clock
        self.page_size = page_size

    def sweep(self) -> Deferred[SweepReport]:
        """Sweep once; never fails (a failure is in the report and the log)."""
        return Deferred.fromCoroutine(self._sweep())

    async def _sweep(self) -> SweepReport:
        began = time.monotonic()
        cutoff = self.clock.seconds() - self.min_age
        backend = self.storage.backend
        listed = checked = deleted = deleted_bytes = 0
        error: str | None = None
        # A generator: making it does no work; each page is pulled on the storage pool.
        listing = backend.list_objects()
        try:
            while page := await self.storage.run(_take, listing, self.page_size):
                listed += len(page)
                old = {o.key: o for o in page if o.modified < cutoff and is_file_key(o.key)}
                if not old:
                    continue
                checked += len(old)
                keys = sorted(old)
                named = await self.database.run(_named_among(keys), readonly=True)
                orphans = [key for key in keys if key not in named]
                if not orphans:
                    continue
                await self.storage.run(backend.delete, orphans)
                deleted += len(orphans)
                deleted_bytes += sum(old[key].size for key in orphans)
                SWEPT.labels(backend.name).inc(len(orphans))
        except Exception as e:  # reported; the next sweep starts over
            error = str(e) or type(e).__name__
        finally:
            # Releases a local listing's open directories; errors here change nothing.
            self.storage.run(listing.close).addErrback(lambda _: None)
        report = SweepReport(listed=listed, checked=checked, deleted=deleted,
                             deleted_bytes=deleted_bytes,
                             seconds=time.monotonic() - began, error=error)
        self._log(report, backend.name)
        return report

    def _log(self, report: SweepReport, backend: str) -> None:
        if report.error is not None:
            log.warn(
                "orphan sweep of {backend} storage stopped after deleting {deleted} "
                "objects: {error}; nothing more is deleted until the next sweep",
                backend=backend, deleted=report.deleted, error=report.error,
                listed=report.listed, checked=report.checked)
        elif report.deleted:
            log.info(
                "orphan sweep of {backend} storage deleted {deleted} objects "
                "({deleted_bytes} bytes) that no file record names, older than "
                "{min_age:g} s; {listed} listed, {checked} checked, {seconds:.2f} s",
                backend=backend, deleted=report.deleted, deleted_bytes=report.deleted_bytes,
                min_age=self.min_age, listed=report.listed, checked=report.checked,
                seconds=report.seconds)


class OrphanSweeperService(Service):
    """Runs :meth:`OrphanSweeper.sweep` every ``interval`` seconds, the first one
    ``interval`` after the start (not while the process is coming up). Stopping waits
    for a sweep in progress, so the storage and database services it uses, which stop
    after it, are still there."""

    name = "orphan-sweeper"

    def __init__(self, sweeper: OrphanSweeper, interval: float, *, clock: Any = None) -> None:
        self.sweeper = sweeper
        self.interval = interval
        self._loop = LoopingCall(sweeper.sweep)
        if clock is not None:
            self._loop.clock = clock
        self._looping: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._looping = self._loop.start(self.interval, now=False)

    def stopService(self) -> Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]
        looping, self._looping = self._looping, None
        if self._loop.running:
            self._loop.stop()
        return looping if looping is not None else succeed(None)
