"""The orphan sweeper on local and S3 storage (moto's server), on SQLite and PostgreSQL:
what goes, what stays, an unreachable database, its metric and log line, its service."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from prometheus_client import REGISTRY
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from twisted.internet import reactor, task

from installsure.db import Database
from installsure.db.tables import files
from installsure.files.keys import is_file_key, storage_key
from installsure.files.orphans import OrphanSweeper, OrphanSweeperService
from installsure.storage import LocalDirectory, Storage, StorageBackend, StoredObject
from tests.db.conftest import MakeDatabase
from tests.fixtures.moto import s3_settings
from tests.fixtures.redis import free_port
from tests.http.helpers import captured_events

MIN_AGE = 3600.0


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A started Storage service over a local directory, or a new bucket of moto's S3
    server (under a prefix, beside an object of someone else's outside it)."""
    backend: StorageBackend
    if request.param == "local":
        backend = LocalDirectory(tmp_path / "files")
        backend.prepare()
    else:
        from installsure.storage.s3 import S3Bucket

        name = f"o-{uuid.uuid4().hex[:12]}"
        bucket = S3Bucket(s3_settings(request.getfixturevalue("moto_endpoint"), name,
                                      s3_prefix="installsure/"))
        bucket.client.create_bucket(Bucket=name)
        bucket.client.put_object(Bucket=name, Key=f"elsewhere/{uuid.uuid4()}", Body=b"x")
        backend = bucket
    service = Storage(backend, threads=2)
    service.startService()
    yield service
    service.stopService()


def put(backend: StorageBackend, key: str, data: bytes = b"stored bytes") -> str:
    writer = backend.create(key)
    writer.write(data)
    writer.commit()
    return key


def stored(backend: StorageBackend) -> set[str]:
    return {o.key for o in backend.list_objects()}


def new_key(suffix: str = "") -> str:
    return storage_key(str(uuid.uuid4())) + suffix


async def record(database: Database, key: str, thumbnail: str | None = None) -> None:
    """A files row whose bytes are ``key`` (and thumbnail ``thumbnail``)."""
    file_id = key.split("/")[1]
    await database.run(lambda c: c.execute(insert(files).values(
        id=file_id, storage_key=key, thumbnail_key=thumbnail, original_name="a.pdf",
        mime_type="application/pdf", extension="pdf", size=3, sha256="0" * 64)))


def clock_between(old: list[StoredObject], young: list[StoredObject]) -> task.Clock:
    """A clock at which every ``old`` object is older than MIN_AGE and every ``young``
    one younger."""
    newest_old = max(o.modified for o in old)
    oldest_young = min(o.modified for o in young)
    assert newest_old < oldest_young
    clock = task.Clock()
    clock.advance((newest_old + oldest_young) / 2 + MIN_AGE)
    return clock


def swept_total(backend: str) -> float:
    value = REGISTRY.get_sample_value("installsure_storage_orphans_swept_total",
                                      {"backend": backend})
    return value or 0.0


@pytest_twisted.ensureDeferred
async def test_old_orphans_go_and_everything_else_stays(database: Database,
                                                        storage: Storage) -> None:
    """An object older than the minimum age that no row names is deleted (in pages: a
    page of two here); a young orphan, objects a row names as its bytes or as its
    thumbnail, and objects not shaped like a file's key stay. The swept counter grows
    by what went and one log line says how much."""
    backend = storage.backend
    named, thumbnail = new_key(), new_key(".thumb.png")
    put(backend, new_key(), b"x" * 10)  # the two orphans
    put(backend, new_key(".thumb.png"), b"yy")
    kept_old = [put(backend, named), put(backend, thumbnail), put(backend, "misc/notes.txt"),
                put(backend, "ab/not-a-file-id")]
    await record(database, named)
    await record(database, new_key(), thumbnail=thumbnail)
    await task.deferLater(reactor, 1.1, lambda: None)  # S3's LastModified: whole seconds
    young = put(backend, new_key())
    listed = list(backend.list_objects())
    clock = clock_between([o for o in listed if o.key != young],
                          [o for o in listed if o.key == young])
    before = swept_total(backend.name)
    sweeper = OrphanSweeper(database, storage, min_age=MIN_AGE, clock=clock, page_size=2)
    with captured_events("installsure.files.orphans") as events:
        report = await sweeper.sweep()
    assert report.error is None
    assert (report.listed, report.checked, report.deleted) == (7, 4, 2)
    assert report.deleted_bytes == 12
    assert stored(backend) == {*kept_old, young}
    assert swept_total(backend.name) - before == 2
    [line] = events
    assert (line["deleted"], line["deleted_bytes"], line["backend"]) == (2, 12, backend.name)
    with captured_events("installsure.files.orphans") as events:
        again = await sweeper.sweep()
    assert (again.deleted, again.error, events) == (0, None, [])


@pytest.fixture
def unreachable(make_database: MakeDatabase, database: Database) -> Database:
    """The same database, out of reach: PostgreSQL at a port nobody listens on (its
    service keeps retrying), SQLite's service stopped (a file cannot go away)."""
    if database.dialect == "sqlite":
        gone = make_database(database.engine.url.render_as_string(hide_password=False))
        pytest_twisted.blockon(gone.started())
        pytest_twisted.blockon(gone.stopService())
        return gone
    moved = make_url(database.engine.url).set(host="127.0.0.1", port=free_port())
    return make_database(moved.render_as_string(hide_password=False), startup_retry=0.05,
                         startup_retry_max=0.2)


@pytest_twisted.ensureDeferred
async def test_with_the_database_unreachable_nothing_is_deleted(
    unreachable: Database, storage: Storage,
) -> None:
    """Old orphans stay when the database does not answer: nothing is known to be
    unreferenced. The sweep reports why it stopped and logs a warning, and counts
    nothing."""
    backend = storage.backend
    keys = {put(backend, new_key()) for _ in range(3)}
    clock = task.Clock()
    clock.advance(time.time() + 2 * MIN_AGE)
    before = swept_total(backend.name)
    with captured_events("installsure.files.orphans") as events:
        report = await OrphanSweeper(unreachable, storage, min_age=MIN_AGE,
                                     clock=clock).sweep()
    assert report.deleted == 0
    assert report.checked == 3
    assert report.error is not None
    assert "database" in report.error
    assert keys <= stored(backend)
    assert swept_total(backend.name) == before
    [warning] = events
    assert warning["log_level"].name == "warn"
    assert warning["error"] == report.error


@pytest_twisted.ensureDeferred
async def test_the_service_sweeps_each_interval_and_stops_after_a_sweep(
    database: Database, tmp_path: Path,
) -> None:
    """The service's first sweep comes one interval after its start, not at it; then
    one per interval; stopping it waits for a sweep in progress."""
    local = LocalDirectory(tmp_path / "files")
    storage = Storage(local, threads=2)
    storage.startService()
    try:
        orphan = put(local, new_key())
        past = time.time() - 2 * MIN_AGE
        os.utime(local.path_of(orphan), (past, past))
        loop_clock = task.Clock()
        service = OrphanSweeperService(
            OrphanSweeper(database, storage, min_age=MIN_AGE), 600.0, clock=loop_clock)
        service.startService()
        assert orphan in stored(local)
        loop_clock.advance(599)
        await task.deferLater(reactor, 0.2, lambda: None)
        assert orphan in stored(local), "no sweep before the first interval ended"
        loop_clock.advance(1)
        stopping = service.stopService()  # while that sweep runs on the pools
        assert not stopping.called
        await stopping
        assert orphan not in stored(local)
    finally:
        storage.stopService()


def test_only_keys_shaped_like_a_files_are_candidates() -> None:
    """File keys are ``<first two of the id>/<id>`` with optional suffixes; a key whose
    directory does not match its id, an upper-case id, other names are not."""
    file_id = "3f0c2a9e-6b1d-4c8e-9f2a-0a1b2c3d4e5f"
    assert is_file_key(f"3f/{file_id}")
    assert is_file_key(f"3f/{file_id}.thumb.png")
    for key in (f"ab/{file_id}", f"3f/{file_id.upper()}", f"{file_id}", f"3f/{file_id}/x",
                f"3f/{file_id}.", "3f/3f0c2a9e", "elsewhere/3f/" + file_id):
        assert not is_file_key(key), key


def test_a_local_listing_skips_partial_uploads_and_what_is_not_a_key(tmp_path: Path) -> None:
    """A local directory lists its committed objects with their size and mtime, not
    uploads in progress under ``.partial/``, hidden or upper-case names, or links."""
    backend = LocalDirectory(tmp_path)
    backend.prepare()
    key = put(backend, new_key(), b"12345")
    in_progress = backend.create(new_key())
    in_progress.write(b"half")
    (tmp_path / ".hidden").write_bytes(b"h")
    (tmp_path / "UPPER").mkdir()
    (tmp_path / "UPPER" / "x").write_bytes(b"u")
    (tmp_path / "ab").mkdir(exist_ok=True)
    (tmp_path / "ab" / "link").symlink_to(backend.path_of(key))
    [listed] = backend.list_objects()
    assert (listed.key, listed.size) == (key, 5)
    assert listed.modified == backend.path_of(key).stat().st_mtime
    in_progress.abort()


@pytest.mark.parametrize(("role", "interval", "sweeps"), [
    ("all", None, True), ("worker", "30m", True), ("api", None, False), ("all", "0", False),
], ids=["all", "worker", "api", "off"])
def test_the_server_sweeps_where_jobs_run_unless_turned_off(
    tmp_path: Path, role: str, interval: str | None, sweeps: bool,
) -> None:
    """The service tree has the sweeper in the roles that run jobs, with the configured
    interval and minimum age, after storage and the database (so it stops before
    them); ``storage.orphan_sweep_interval = 0`` and the api role have none."""
    from twisted.internet.testing import MemoryReactorClock

    from installsure.config import load_config
    from installsure.service import build_service

    environ = {"INSTALLSURE_DATA_DIR": str(tmp_path), "INSTALLSURE_REDIS_URL":
               f"redis://127.0.0.1:{free_port()}", "INSTALLSURE_STORAGE_ORPHAN_MIN_AGE": "2h"}
    if interval is not None:
        environ["INSTALLSURE_STORAGE_ORPHAN_SWEEP_INTERVAL"] = interval
    config = load_config(environ=environ, options={"role": role})
    [services] = list(build_service(config, reactor=MemoryReactorClock()))
    services.database.engine.dispose()  # built, never started
    sweeper = services.orphan_sweeper
    if not sweeps:
        assert sweeper is None
        return
    assert (sweeper.interval, sweeper.sweeper.min_age) == (
        1800.0 if interval else 3600.0, 7200.0)
    order = [s.name for s in services]
    assert order.index("database") < order.index("storage") < order.index("orphan-sweeper")


def test_sweep_settings_refuse_what_could_delete_an_upload_in_progress() -> None:
    """A minimum age under 60 s, or an interval between 0 and 1 s, is a config error
    naming the setting."""
    from installsure.config import ConfigError, load_config

    for key, value in (("ORPHAN_MIN_AGE", "30s"), ("ORPHAN_SWEEP_INTERVAL", "500ms")):
        with pytest.raises(ConfigError, match=f"storage.{key.lower()}"):
            load_config(environ={f"INSTALLSURE_STORAGE_{key}": value})
