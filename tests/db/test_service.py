"""The Database service: queries on its own thread pool, transactions, start-up, stop."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from twisted.internet import defer, reactor, task
from twisted.internet.defer import gatherResults
from twisted.protocols.portforward import ProxyFactory
from twisted.python.failure import Failure

from installsure.db import (
    Database,
    DatabaseConfigError,
    DatabaseUnavailable,
    app_meta,
    head_revision,
    upgrade,
)
from tests.db.conftest import MakeDatabase
from tests.db.helpers import WAIT, signal_from_thread, within
from tests.fixtures.redis import free_port


def get_value(key: str) -> Any:
    def fn(connection: Connection) -> str | None:
        return connection.execute(
            select(app_meta.c.value).where(app_meta.c.key == key)
        ).scalar_one_or_none()

    return fn


def put_value(key: str, value: str) -> Any:
    def fn(connection: Connection) -> None:
        connection.execute(insert(app_meta).values(key=key, value=value))

    return fn


@pytest_twisted.ensureDeferred
async def test_start_applies_migrations(database: Database) -> None:
    """With auto_migrate, start-up brings the schema to head before started() fires."""
    assert database.ready
    instance_id = await within(database.run(get_value("instance_id")))
    assert instance_id is not None
    assert len(instance_id) == 36

    def revision(connection: Connection) -> str:
        return str(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar())

    assert await within(database.run(revision)) == head_revision()


@pytest_twisted.ensureDeferred
async def test_run_commits_when_fn_returns(database: Database) -> None:
    """Work done in run() is committed and visible to the next transaction."""
    await within(database.run(put_value("greeting", "hello")))
    assert await within(database.run(get_value("greeting"))) == "hello"


@pytest_twisted.ensureDeferred
async def test_run_rolls_back_when_fn_raises(database: Database) -> None:
    """An exception in fn fails the Deferred with it and undoes the whole transaction."""

    def insert_then_fail(connection: Connection) -> None:
        put_value("half-done", "x")(connection)
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await within(database.run(insert_then_fail))
    assert await within(database.run(get_value("half-done"))) is None


@pytest_twisted.ensureDeferred
async def test_sql_errors_reach_the_caller_unchanged(database: Database) -> None:
    """A constraint violation is the caller's error to handle, not 'database unavailable'."""
    await within(database.run(put_value("dup", "1")))
    with pytest.raises(IntegrityError):
        await within(database.run(put_value("dup", "2")))


@pytest_twisted.ensureDeferred
async def test_many_concurrent_runs_all_commit(database: Database) -> None:
    """Fifty overlapping run() calls from the reactor all commit, none lost or failed."""
    await within(gatherResults([database.run(put_value(f"k{i}", str(i))) for i in range(50)]))

    def count(connection: Connection) -> int:
        query = text("SELECT count(*) FROM app_meta WHERE key LIKE 'k%'")
        return int(connection.execute(query).scalar_one())

    assert await within(database.run(count)) == 50


@pytest_twisted.ensureDeferred
async def test_read_then_write_transactions_do_not_collide(database: Database) -> None:
    """Transactions that read a value and then write it back serialize instead of failing
    with "database is locked" (SQLite) or losing updates (row lock on PostgreSQL)."""
    await within(database.run(put_value("counter", "0")))
    lock = " FOR UPDATE" if database.dialect == "postgresql" else ""

    def increment(connection: Connection) -> None:
        current = connection.execute(
            text(f"SELECT value FROM app_meta WHERE key = 'counter'{lock}")  # noqa: S608
        ).scalar_one()
        connection.execute(
            text("UPDATE app_meta SET value = :v WHERE key = 'counter'"),
            {"v": str(int(current) + 1)},
        )

    await within(gatherResults([database.run(increment) for _ in range(30)]))
    assert await within(database.run(get_value("counter"))) == "30"


@pytest_twisted.ensureDeferred
async def test_queries_run_on_the_dedicated_pool_concurrently(
    make_database: MakeDatabase, database_url: str
) -> None:
    """run() uses the service's own threads (not the reactor's pool), several at once."""
    database = make_database(database_url, pool_size=3)
    await within(database.started())
    barrier = threading.Barrier(3, timeout=WAIT)

    def meet(connection: Connection) -> str:
        connection.exec_driver_sql("SELECT 1")
        barrier.wait()  # only returns once three transactions are open at the same time
        return threading.current_thread().name

    names = await within(gatherResults([database.run(meet, readonly=True) for _ in range(3)]))
    assert len(set(names)) == 3
    assert all("installsure-db" in name for name in names)


@pytest_twisted.ensureDeferred
async def test_sqlite_pragmas_on_every_connection(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    """Each pooled SQLite connection has WAL, foreign keys, our busy timeout and
    synchronous=NORMAL."""
    database = make_database(f"sqlite:///{tmp_path / 'db.sqlite'}", pool_size=3, busy_timeout=2.5)
    await within(database.started())
    barrier = threading.Barrier(3, timeout=WAIT)

    def pragmas(connection: Connection) -> tuple[Any, ...]:
        values = tuple(
            connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        )
        barrier.wait()  # three distinct connections, not one reused
        return values

    results = await within(gatherResults([database.run(pragmas, readonly=True) for _ in range(3)]))
    assert results == [("wal", 1, 2500, 1)] * 3


@pytest_twisted.ensureDeferred
async def test_foreign_keys_are_enforced(database: Database) -> None:
    """A row pointing at a missing parent is refused on both dialects."""

    def schema(connection: Connection) -> None:
        connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
            "REFERENCES parent (id))"
        )

    def orphan(connection: Connection) -> None:
        connection.exec_driver_sql("INSERT INTO child (id, parent_id) VALUES (1, 42)")

    await within(database.run(schema))
    with pytest.raises(IntegrityError):
        await within(database.run(orphan))


@pytest_twisted.ensureDeferred
async def test_sqlite_reader_is_not_blocked_by_a_writer(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    """With WAL, a read-only run() completes while another transaction holds the write
    lock, and sees the last committed state."""
    database = make_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await within(database.started())
    writing, signal_writing = signal_from_thread()
    release = threading.Event()

    def slow_write(connection: Connection) -> None:
        put_value("pending", "1")(connection)
        signal_writing()
        release.wait(WAIT)

    write = database.run(slow_write)
    try:
        await within(writing)
        assert await within(database.run(get_value("pending"), readonly=True), 5) is None
    finally:
        release.set()
    await within(write)
    assert await within(database.run(get_value("pending"))) == "1"


@pytest_twisted.ensureDeferred
async def test_sqlite_locked_too_long_is_unavailable(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    """A writer that cannot get the lock within busy_timeout gets DatabaseUnavailable
    saying so, rather than hanging or a raw driver error."""
    database = make_database(f"sqlite:///{tmp_path / 'db.sqlite'}", busy_timeout=0.2)
    await within(database.started())
    writing, signal_writing = signal_from_thread()
    release = threading.Event()

    def hold_lock(connection: Connection) -> None:
        put_value("holder", "1")(connection)
        signal_writing()
        release.wait(WAIT)

    held = database.run(hold_lock)
    try:
        await within(writing)
        with pytest.raises(DatabaseUnavailable, match=r"locked .* busy_timeout"):
            await within(database.run(put_value("second", "2")))
    finally:
        release.set()
    await within(held)


@pytest_twisted.ensureDeferred
async def test_readonly_transaction_refuses_writes_on_postgres(
    make_database: MakeDatabase, postgres_url: str
) -> None:
    """readonly=True on PostgreSQL is a READ ONLY transaction: a write is an error."""
    from sqlalchemy.exc import InternalError, OperationalError, ProgrammingError

    database = make_database(postgres_url)
    await within(database.started())
    with pytest.raises((InternalError, OperationalError, ProgrammingError), match="read-only"):
        await within(database.run(put_value("nope", "x"), readonly=True))


@pytest_twisted.ensureDeferred
async def test_ping_reports_latency_in_ms(database: Database) -> None:
    """ping() runs SELECT 1 and reports a small positive number of milliseconds."""
    latency = await within(database.ping())
    assert isinstance(latency, float)
    assert 0 < latency < WAIT * 1000


@pytest_twisted.ensureDeferred
async def test_in_memory_sqlite_keeps_data_between_runs(make_database: MakeDatabase) -> None:
    """sqlite:// works: one shared connection, so data survives between transactions."""
    database = make_database("sqlite://")
    await within(database.started())
    await within(database.run(put_value("memory", "kept")))
    assert await within(database.run(get_value("memory"))) == "kept"


def test_run_before_start_is_refused(tmp_path: Path) -> None:
    """A service that was never started refuses work with a clear error."""
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}", auto_migrate=True)
    failures: list[Failure] = []
    database.run(get_value("x")).addErrback(failures.append)
    assert len(failures) == 1
    assert isinstance(failures[0].value, DatabaseUnavailable)
    assert "not running" in str(failures[0].value)


@pytest_twisted.ensureDeferred
async def test_without_auto_migrate_an_old_schema_stops_start_up(
    make_database: MakeDatabase, database_url: str
) -> None:
    """auto_migrate off and an empty database: started() fails telling the operator to
    run the migrate command, and queries are refused meanwhile."""
    database = make_database(database_url, auto_migrate=False)
    with pytest.raises(DatabaseConfigError, match=r"python -m installsure migrate"):
        await within(database.started())
    assert not database.ready
    assert "python -m installsure migrate" in (database.startup_error or "")
    with pytest.raises(DatabaseUnavailable, match="could not start"):
        await within(database.ping())


@pytest_twisted.ensureDeferred
async def test_without_auto_migrate_a_current_schema_starts(
    make_database: MakeDatabase, database_url: str
) -> None:
    """auto_migrate off and a migrated database: the service starts normally."""
    upgrade(database_url)
    database = make_database(database_url, auto_migrate=False)
    await within(database.started())
    assert await within(database.run(get_value("instance_id"))) is not None


@pytest_twisted.ensureDeferred
async def test_schema_from_a_newer_version_stops_start_up(
    make_database: MakeDatabase, database_url: str
) -> None:
    """Whether or not it migrates, the service refuses a schema it does not know (made by
    a newer InstallSure) instead of running queries against it."""
    upgrade(database_url)

    def pretend_newer(connection: Connection) -> None:
        connection.execute(text("UPDATE alembic_version SET version_num = '9000'"))

    from installsure.db.engine import create_engine_for
    from installsure.db.urls import parse_database_url

    engine = create_engine_for(parse_database_url(database_url), pool_size=1)
    try:
        with engine.begin() as connection:
            pretend_newer(connection)
    finally:
        engine.dispose()
    for auto_migrate in (True, False):
        database = make_database(database_url, auto_migrate=auto_migrate)
        with pytest.raises(DatabaseConfigError, match="newer version"):
            await within(database.started())


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_running_queries(make_database: MakeDatabase, tmp_path: Path) -> None:
    """stopService lets a query in progress finish and deliver its result, then refuses
    new work."""
    database = make_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await within(database.started())
    running, signal_running = signal_from_thread()
    release = threading.Event()

    def slow(connection: Connection) -> str:
        signal_running()
        release.wait(WAIT)
        return "finished"

    query = database.run(slow)
    await within(running)
    stopping = database.stopService()
    assert not stopping.called
    with pytest.raises(DatabaseUnavailable, match="not running"):
        await within(database.run(get_value("x")))
    release.set()
    assert await within(query) == "finished"
    await within(stopping)


def test_password_is_hidden_in_url_property() -> None:
    """The url attribute, used in logs, never shows the password."""
    database = Database("postgresql://app:topsecret@127.0.0.1:5432/x", auto_migrate=True)
    assert database.dialect == "postgresql"
    assert "topsecret" not in database.url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/x", "not supported"),
        ("sqlite:////proc/installsure/installsure.db", "cannot create the directory"),
        ("sqlite:////etc/hostname/installsure.db", "is a file, not a directory"),
    ],
)
def test_bad_configuration_fails_when_the_service_is_built(url: str, expected: str) -> None:
    """Bad URLs and unusable directories are refused while twistd builds the service
    tree, with a message instead of a traceback at the first query."""
    with pytest.raises(DatabaseConfigError, match=expected):
        Database(url, auto_migrate=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_read_only_directory_is_refused(tmp_path: Path) -> None:
    """A data directory this user cannot write to is named in the error."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(DatabaseConfigError, match="not writable"):
        Database(f"sqlite:///{locked / 'installsure.db'}", auto_migrate=True)


@pytest.mark.parametrize("option", [{"pool_size": 0}, {"busy_timeout": -1.0}])
def test_bad_pool_options_are_refused(tmp_path: Path, option: dict[str, Any]) -> None:
    """Nonsensical pool settings are configuration errors."""
    with pytest.raises(DatabaseConfigError):
        Database(f"sqlite:///{tmp_path / 'db.sqlite'}", auto_migrate=True, **option)


@pytest_twisted.ensureDeferred
async def test_unreachable_postgres_retries_then_recovers(
    make_database: MakeDatabase, postgres_admin_url: URL, postgres_url: str
) -> None:
    """PostgreSQL down at start: the service stays up, ping() says why it is not ready,
    and once the server answers the migrations run and started() fires."""
    port = free_port()
    moved = make_url(postgres_url).set(host="127.0.0.1", port=port)
    unreachable = moved.render_as_string(hide_password=False)
    database = make_database(unreachable, startup_retry=0.05, startup_retry_max=0.2)
    ready = database.started()
    with pytest.raises(DatabaseUnavailable, match="not ready yet"):
        await within(database.ping())
    # No event marks a failed attempt; poll (bounded) until the first one has failed.
    deadline = reactor.seconds() + WAIT  # type: ignore[attr-defined]
    while database.startup_error is None and reactor.seconds() < deadline:  # type: ignore[attr-defined]
        await task.deferLater(reactor, 0.02)  # type: ignore[arg-type]
    assert "cannot reach the PostgreSQL database" in (database.startup_error or "")
    with pytest.raises(DatabaseUnavailable, match=r"not ready yet.*cannot reach"):
        await within(database.ping())
    assert not ready.called
    # The "server" appears: a TCP forwarder to the real one on the port we tried.
    forward = ProxyFactory(postgres_admin_url.host or "127.0.0.1", postgres_admin_url.port or 5432)
    listener = reactor.listenTCP(port, forward, interface="127.0.0.1")  # type: ignore[arg-type]
    try:
        await within(ready)
        assert database.startup_error is None
        assert await within(database.ping()) > 0
    finally:
        await database.stopService()
        await defer.maybeDeferred(listener.stopListening)


@pytest_twisted.ensureDeferred
async def test_stopping_before_the_database_answered_fails_started(
    make_database: MakeDatabase,
) -> None:
    """A service stopped while still waiting for its database reports that on started()
    rather than leaving waiters hanging."""
    database = make_database(
        f"postgresql://postgres@127.0.0.1:{free_port()}/x", startup_retry=0.05
    )
    ready = database.started()
    await within(database.stopService())
    with pytest.raises(DatabaseUnavailable, match="never became ready"):
        await within(ready)


class _TrackingProxyFactory(ProxyFactory):
    """A TCP forwarder that can cut every connection it carries (a server going away)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.carried: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        self.carried.append(proto)
        return proto

    def cut_all(self) -> None:
        for proto in self.carried:
            if proto.transport is not None:
                proto.transport.abortConnection()
        self.carried.clear()


@pytest_twisted.ensureDeferred
async def test_postgres_connections_lost_after_start_are_replaced(
    make_database: MakeDatabase, postgres_admin_url: URL, postgres_url: str
) -> None:
    """When the server drops every connection, queries fail with DatabaseUnavailable
    (never hang) and the next ones succeed on fresh connections (pre-ping)."""
    port = free_port()
    forward = _TrackingProxyFactory(
        postgres_admin_url.host or "127.0.0.1", postgres_admin_url.port or 5432
    )
    listener = reactor.listenTCP(port, forward, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        moved = make_url(postgres_url).set(host="127.0.0.1", port=port)
        database = make_database(moved.render_as_string(hide_password=False), pool_size=2)
        await within(database.started())
        await within(database.ping())
        # The server goes away entirely: every connection cut, nothing listening.
        forward.cut_all()
        await defer.maybeDeferred(listener.stopListening)
        with pytest.raises(DatabaseUnavailable, match="cannot reach the PostgreSQL database"):
            await within(database.ping())
        # It comes back on the same port: the pool replaces its dead connections.
        listener = reactor.listenTCP(port, forward, interface="127.0.0.1")  # type: ignore[attr-defined]
        assert await within(database.ping()) > 0
        assert await within(database.run(get_value("instance_id"))) is not None
    finally:
        await defer.maybeDeferred(listener.stopListening)
        forward.cut_all()


@pytest_twisted.ensureDeferred
async def test_reactor_shutdown_stops_the_pool_threads(tmp_path: Path) -> None:
    """If the reactor shuts down without stopService (another service failed), the
    pool's threads are stopped so they cannot keep the process alive."""

    class RecordingReactor:
        """The real reactor, except that shutdown triggers are kept for the test to fire."""

        def __init__(self) -> None:
            self.triggers: dict[object, Any] = {}

        def addSystemEventTrigger(self, phase: str, event: str, fn: Any) -> object:
            assert (phase, event) == ("during", "shutdown")
            handle = object()
            self.triggers[handle] = fn
            return handle

        def removeSystemEventTrigger(self, handle: object) -> None:
            del self.triggers[handle]

        def __getattr__(self, name: str) -> Any:
            return getattr(reactor, name)

    def pool_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if "installsure-db" in t.name]

    fake = RecordingReactor()
    database = Database(
        f"sqlite:///{tmp_path / 'db.sqlite'}", auto_migrate=True, reactor=fake
    )
    database.startService()
    try:
        await within(database.started())
        assert pool_threads()
        (shutdown,) = fake.triggers.values()
        shutdown()
        for thread in pool_threads():
            thread.join(WAIT)
        assert pool_threads() == []
    finally:
        await within(database.stopService())


@pytest_twisted.ensureDeferred
async def test_sqlite_pool_threads_keep_their_connection_and_close_it_at_stop(
    make_database: MakeDatabase, tmp_path: Path,
) -> None:
    """On a SQLite file each pool thread keeps one connection across calls (no pool
    checkout per query); a write after a read on it still takes the write lock at
    BEGIN (the read-only option does not stick); stopping closes every kept one."""
    import sqlite3

    path = tmp_path / "kept.db"
    database = make_database(f"sqlite:///{path}", pool_size=1)
    await within(database.started())

    def driver_of(connection: Connection) -> int:
        return id(connection.connection.driver_connection)

    first = await within(database.run(driver_of, readonly=True))
    assert await within(database.run(driver_of)) == first

    def write_lock_taken(connection: Connection) -> bool:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            return "locked" in str(e)
        finally:
            other.close()
        return False

    await within(database.run(get_value("x"), readonly=True))
    assert await within(database.run(write_lock_taken)) is True
    assert await within(database.run(write_lock_taken, readonly=True)) is False
    engine = database.engine
    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    await within(database.stopService())
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
