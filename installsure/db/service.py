"""The Database service: SQLAlchemy Core on a dedicated thread pool, as Deferreds.

Every query blocks, so it runs on this service's own ``ThreadPool`` (never the
reactor's default pool, which DNS lookups and other libraries share): ``run(fn)`` calls
``fn(connection)`` inside a transaction on a pool thread and returns a Deferred of its
result. The pool has as many threads as the Engine has connections, so a thread never
waits for a connection; with a SQLite file each thread keeps its own (a pool checkout
cost as much as a query). The calls made during one reactor turn are handed to the pool
together (:mod:`installsure.db.handoff`), which saves a thread wake-up per query under
load.

Start-up applies migrations (``auto_migrate``) or checks the schema is current, on the
pool, and retries with backoff while the database is unreachable: the process stays up,
``ping()`` reports not ready, and it recovers when the database appears. ``started()``
fires once the schema is ready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from installsure.db.engine import READONLY_OPTION, create_engine_for
from installsure.db.errors import DatabaseConfigError, DatabaseUnavailable, MigrationError
from installsure.db.failures import is_unavailable, unavailable
from installsure.db.handoff import BatchedHandoff
from installsure.db.migrate import (
    MigrationResult,
    check_known_revision,
    current_revision_engine,
    head_revision,
    upgrade_engine,
)
from installsure.db.urls import Dialect, parse_database_url

T = TypeVar("T")

log = Logger()

class Database(Service):
    """The database, as a Twisted service. See the module docstring.

    ``reactor`` must provide IReactorCore, IReactorTime and IReactorFromThreads (the
    global reactor by default). ``startup_retry`` is the first delay between start-up
    attempts while the database is unreachable; it doubles up to ``startup_retry_max``.
    """

    name = "database"

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool,
        pool_size: int = 5,
        busy_timeout: float = 5.0,
        echo: bool = False,
        reactor: Any = None,
        startup_retry: float = 1.0,
        startup_retry_max: float = 30.0,
    ) -> None:
        # Configuration errors surface here, while twistd builds the service tree, so
        # they stop the process with a message before anything else starts.
        self._url = parse_database_url(url)
        self._engine = create_engine_for(
            self._url, pool_size=pool_size, busy_timeout=busy_timeout, echo=echo
        )
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._reactor = reactor
        self.auto_migrate = auto_migrate
        # An in-memory SQLite database is one shared connection: one thread at a time.
        self._threads = 1 if self._url.is_memory else pool_size
        self._startup_retry = startup_retry
        self._startup_retry_max = startup_retry_max
        self._pool: ThreadPool | None = None
        # A file's SQLite connections are kept by their pool threads (_kept_connection).
        self._keeps_connections = self._url.dialect == "sqlite" and not self._url.is_memory
        self._local = threading.local()
        self._kept_lock = threading.Lock()
        self._kept: list[Connection] = []
        self._handoff: BatchedHandoff | None = None
        self._shutdown_trigger: Any = None
        self._retry_call: IDelayedCall | None = None
        self._closing = False
        self._in_flight: set[Deferred[None]] = set()
        self._startup_done = False
        self._startup_failure: Failure | None = None
        self._startup_waiters: list[Deferred[None]] = []
        self._last_startup_error: BaseException | None = None

    # -- what callers use ------------------------------------------------------------

    @property
    def dialect(self) -> Dialect:
        return self._url.dialect

    @property
    def url(self) -> str:
        """The database URL with any password hidden: the form to log."""
        return self._url.redacted

    @property
    def engine(self) -> Engine:
        """The Engine, for code that already runs on a pool thread (tests, tools)."""
        return self._engine

    @property
    def ready(self) -> bool:
        """True once the schema is ready (migrated or checked) and queries may run."""
        return self._startup_done and self._startup_failure is None

    @property
    def startup_error(self) -> str | None:
        """Why the schema is not ready (last failed attempt), for health reports."""
        if self._startup_failure is not None:
            return str(self._startup_failure.value)
        if not self._startup_done and self._last_startup_error is not None:
            return str(self._last_startup_error)
        return None

    def started(self) -> Deferred[None]:
        """Fires once the schema is ready; fails with DatabaseConfigError if it cannot be
        (unknown revision, schema behind and auto_migrate off), MigrationError if a
        migration failed (rolled back), or DatabaseUnavailable if the service stops
        before the database ever answered."""
        if not self._startup_done:
            waiter: Deferred[None] = Deferred()
            self._startup_waiters.append(waiter)
            return waiter
        if self._startup_failure is None:
            return succeed(None)
        return fail(self._startup_failure)

    def run(self, fn: Callable[[Connection], T], *, readonly: bool = False) -> Deferred[T]:
        """Call ``fn(connection)`` in a transaction on a pool thread.

        The transaction commits when ``fn`` returns and rolls back when it raises (the
        Deferred then fails with that exception). ``fn`` must not touch the reactor.
        ``readonly=True`` is for work that only reads: on SQLite it does not take the
        write lock, so it runs alongside a writer; on PostgreSQL the transaction is
        READ ONLY. Fails with DatabaseUnavailable when the database cannot be reached
        or the service is not running or not ready.
        """
        refused = self._refusal()
        if refused is not None:
            return fail(refused)
        return self._on_pool(self._run_sync, fn, readonly)

    def ping(self) -> Deferred[float]:
        """``SELECT 1`` round trip in milliseconds (including the wait for a thread)."""
        began = time.perf_counter()

        def select_one(connection: Connection) -> object:
            return connection.exec_driver_sql("SELECT 1").scalar()

        d = self.run(select_one, readonly=True)
        return d.addCallback(lambda _: (time.perf_counter() - began) * 1000.0)

    # -- service life ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._closing = False
        # A restarted service prepares the schema again.
        self._startup_done = False
        self._startup_failure = None
        self._last_startup_error = None
        self._pool = ThreadPool(minthreads=0, maxthreads=self._threads, name="installsure-db")
        self._pool.start()
        self._handoff = BatchedHandoff(self._reactor, self._pool, self._threads)
        # If the reactor stops without stopping us (tests, crashes in other services),
        # idle pool threads would keep the process alive.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._stop_pool_now
        )
        log.info(
            "database {url} starting ({dialect}, {threads} threads, auto_migrate={auto_migrate})",
            url=self.url,
            dialect=self.dialect,
            threads=self._threads,
            auto_migrate=self.auto_migrate,
        )
        self._attempt_startup(self._startup_retry)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        self._closing = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if not self._startup_done:
            reason = self._last_startup_error or "it was stopped before starting"
            self._finish_startup(
                Failure(  # type: ignore[no-untyped-call]
                    DatabaseUnavailable(f"the database never became ready: {reason}")
                )
            )
        # Let queries already running finish (threads cannot be interrupted anyway).
        waiting = DeferredList(list(self._in_flight))
        d: Deferred[Any] = waiting.addCallback(lambda _: self._close())
        return d.addCallback(lambda _: None)

    def _close(self) -> Deferred[None]:
        pool = self._pool
        if pool is None:
            return succeed(None)
        # dispose() closes connections (a SQLite WAL checkpoint may run): on the pool.
        d = deferToThreadPool(self._reactor, pool, self._dispose)

        def stop_pool(_: object) -> None:
            self._stop_pool_now()
            log.info("database {url} stopped", url=self.url)

        return d.addBoth(stop_pool)

    def _stop_pool_now(self) -> None:
        pool, self._pool = self._pool, None
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            handoff.fail_queued(Failure(DatabaseUnavailable(  # type: ignore[no-untyped-call]
                f"the database service for {self.url} stopped")))
        if self._shutdown_trigger is not None:
            # Already removed when it fired: then we are running as that trigger.
            with suppress(ValueError, KeyError):
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if pool is not None:
            # Threads are idle by now, so joining them returns at once.
            pool.stop()

    # -- start-up --------------------------------------------------------------------

    def _attempt_startup(self, delay: float) -> None:
        self._retry_call = None
        if self._closing:
            return
        d = self._on_pool(self._prepare_schema_sync)

        def succeeded(result: MigrationResult | str) -> None:
            if isinstance(result, MigrationResult):
                if result.changed:
                    log.info(
                        "database {url} migrated from {before} to {after}",
                        url=self.url,
                        before=result.before or "an empty database",
                        after=result.after,
                    )
                else:
                    log.info("database {url} schema is current ({revision})",
                             url=self.url, revision=result.after)
            else:
                log.info("database {url} schema is current ({revision})",
                         url=self.url, revision=result)
            self._finish_startup(None)

        def failed(failure: Failure) -> None:
            if self._closing:
                self._last_startup_error = failure.value
                return
            if isinstance(failure.value, DatabaseUnavailable):
                self._last_startup_error = failure.value
                log.warn(
                    "database not ready: {error}; retrying in {delay:.1f}s",
                    error=str(failure.value),
                    delay=delay,
                )
                self._retry_call = self._reactor.callLater(
                    delay,
                    self._attempt_startup,
                    min(delay * 2, self._startup_retry_max),
                )
                return
            if isinstance(failure.value, DatabaseConfigError | MigrationError):
                log.error("database cannot start: {error}", error=str(failure.value))
            else:
                log.failure("database start-up failed unexpectedly", failure)
            self._finish_startup(failure)

        d.addCallbacks(succeeded, failed)

    def _prepare_schema_sync(self) -> MigrationResult | str:
        """On a pool thread: migrate, or check that the schema needs no migration."""
        if self.auto_migrate:
            return upgrade_engine(self._engine, self._url)
        current = current_revision_engine(self._engine, self._url)
        check_known_revision(current)
        head = head_revision()
        if current != head:
            raise DatabaseConfigError(
                f"the database {self.url} is at schema revision {current or '(empty)'} but "
                f"this version needs {head}; run `python -m installsure migrate` (or set "
                f"database.auto_migrate = true)"
            )
        return current

    def _finish_startup(self, outcome: Failure | None) -> None:
        if self._startup_done:
            return
        self._startup_done = True
        self._startup_failure = outcome
        waiters, self._startup_waiters = self._startup_waiters, []
        for waiter in waiters:
            if outcome is None:
                waiter.callback(None)
            else:
                waiter.errback(outcome)

    # -- running work ----------------------------------------------------------------

    def _refusal(self) -> Exception | None:
        if not self.running or self._closing or self._pool is None:
            return DatabaseUnavailable(
                f"the database service for {self.url} is not running (not started yet, or "
                f"shutting down)"
            )
        if not self._startup_done:
            detail = f": {self._last_startup_error}" if self._last_startup_error else ""
            return DatabaseUnavailable(
                f"the database {self.url} is not ready yet (schema being prepared){detail}"
            )
        if self._startup_failure is not None:
            return DatabaseUnavailable(
                f"the database {self.url} could not start: {self._startup_failure.value}"
            )
        return None

    def _on_pool(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        handoff = self._handoff
        if handoff is None:
            return fail(DatabaseUnavailable(f"the database service for {self.url} is stopped"))
        # Batched with the other calls of this reactor turn (installsure.db.handoff).
        d = handoff.submit(f, *args)
        # Tracked so stopService can wait for it.
        done: Deferred[None] = Deferred()
        self._in_flight.add(done)

        def finished(result: T | Failure) -> T | Failure:
            self._in_flight.discard(done)
            done.callback(None)
            return result

        return d.addBoth(finished)

    def _run_sync(self, fn: Callable[[Connection], T], readonly: bool) -> T:
        try:
            if self._keeps_connections:
                return self._in_transaction(self._kept_connection(), fn, readonly)
            with self._engine.connect() as connection:
                return self._in_transaction(connection, fn, readonly)
        except DBAPIError as e:
            if is_unavailable(e):
                raise unavailable(self._url, e) from e
            raise

    def _in_transaction(self, connection: Connection, fn: Callable[[Connection], T],
                        readonly: bool) -> T:
        # Set on every call: a kept connection runs reading and writing work in turn.
        connection.execution_options(**{READONLY_OPTION: readonly})
        with connection.begin():
            if readonly and self.dialect == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            return fn(connection)

    def _kept_connection(self) -> Connection:
        """This pool thread's own connection to a SQLite file, opened on first use.

        Checking a connection out of SQLAlchemy's pool and back in cost about as much
        as the query it was for; a SQLite connection cannot go stale, so each thread
        keeps one (``_close`` closes them). A server database keeps the pool's
        checkout, whose ping turns a dead connection into a reconnect."""
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            if connection is not None:
                with suppress(Exception):
                    connection.close()
            connection = self._engine.connect()
            self._local.connection = connection
            with self._kept_lock:
                self._kept.append(connection)
        return connection

    def _dispose(self) -> None:
        """On a pool thread: close the kept connections, then the pool's."""
        with self._kept_lock:
            kept, self._kept = self._kept, []
        for connection in kept:
            with suppress(Exception):
                connection.close()
        self._engine.dispose()
