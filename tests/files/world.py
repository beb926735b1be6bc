"""A files API served on a real socket over a real database and storage, for tests.

Until the accounts and projects work lands, requests authenticate with a test-only
authenticator (``Authorization: Bearer test:<user id>`` of a user row the test made) and
project roles come from a minimal ProjectAccess over the ``project_members`` table.
Neither exists outside tests/.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest_twisted
from attrs import define, field
from sqlalchemy import Connection, insert, select
from twisted.internet import reactor
from twisted.internet.tcp import Port

from installsure.api.files import files_router
from installsure.auth.membership import DatabaseProjectAccess
from installsure.auth.principal import Principal
from installsure.db import Database
from installsure.db.tables import files, project_members, projects, users
from installsure.files.library import FileLibrary
from installsure.files.settings import UploadSettings
from installsure.http import ApiError, HttpSettings, build_site
from installsure.http.context import RequestContext
from installsure.http.ratelimit import RateLimiter
from installsure.jobs import JobQueue
from installsure.jobs.events import RecordingJobEventPublisher
from installsure.storage import LocalDirectory, Storage, StorageBackend


class TestAuthenticator:
    """``Bearer test:<user id>`` for users the world made; 401 for anything else."""

    def __init__(self) -> None:
        self.principals: dict[str, Principal] = {}

    def __call__(self, ctx: RequestContext, requirement: str) -> Principal:
        sent = ctx.request.getHeader(b"authorization") or b""  # type: ignore[no-untyped-call]
        token = sent.decode() if isinstance(sent, bytes) else sent
        principal = self.principals.get(token.removeprefix("Bearer "))
        if principal is None:
            raise ApiError("UNAUTHENTICATED", "Missing or wrong credentials.")
        return principal


@define
class FilesWorld:
    """The served files API and what it is made of."""

    database: Database
    storage: Storage
    library: FileLibrary
    authenticator: TestAuthenticator
    events: RecordingJobEventPublisher
    port: Port | None = None
    limits: UploadSettings = field(factory=UploadSettings)
    presigned: bool = False

    @property
    def number(self) -> int:
        assert self.port is not None
        return int(self.port.getHost().port)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.number}"

    async def user(self, role: str = "member", name: str = "Someone") -> dict[str, str]:
        """A new user row of ``role``; the headers that authenticate as it."""
        user_id = str(uuid.uuid4())

        def add(connection: Connection) -> None:
            connection.execute(insert(users).values(
                id=user_id, email=f"{user_id}@example.test", email_key=f"{user_id}@example.test",
                name=name, password_hash="-", role=role))

        await self.database.run(add)
        self.authenticator.principals[f"test:{user_id}"] = Principal(
            id=user_id, role=role, name=name)
        return {"Authorization": f"Bearer test:{user_id}", "X-User": user_id}

    async def project(self, members: dict[str, str] | None = None,
                      name: str | None = None) -> str:
        """A new project with ``members`` ({user id: project role}); its id."""
        project_id = str(uuid.uuid4())
        label = name or f"Project {project_id[:8]}"

        def add(connection: Connection) -> None:
            connection.execute(insert(projects).values(
                id=project_id, name=label, name_key=label.lower(),
                created_at=dt.datetime.now(dt.UTC), updated_at=dt.datetime.now(dt.UTC)))
            for user_id, role in (members or {}).items():
                connection.execute(insert(project_members).values(
                    project_id=project_id, user_id=user_id, role=role))

        await self.database.run(add)
        return project_id

    async def rows(self, table: Any = None) -> list[Any]:
        """Every row of ``table`` (the files table by default)."""
        chosen = files if table is None else table
        return list(await self.database.run(lambda c: c.execute(select(chosen)).fetchall()))

    def stored_objects(self) -> list[Path]:
        """Every file the local storage holds, partial ones included."""
        backend = self.storage.backend
        assert isinstance(backend, LocalDirectory)
        return sorted(p for p in backend.root.rglob("*") if p.is_file())


def serve_files(
    database: Database,
    tmp_path: Path,
    *,
    wire: str = "fast",
    limits: UploadSettings | None = None,
    backend: StorageBackend | None = None,
    queue: JobQueue | None = None,
    rate_limiter: RateLimiter | None = None,
    settings: HttpSettings | None = None,
    presigned: bool = False,
) -> Iterator[FilesWorld]:
    """Start storage and serve the files routes on 127.0.0.1; stop both afterwards."""
    storage = Storage(backend or LocalDirectory(tmp_path / "files"), threads=4)
    storage.startService()
    events = RecordingJobEventPublisher()
    library = FileLibrary(database, storage, DatabaseProjectAccess(database), events=events,
                          queue=queue)
    limits = limits or UploadSettings()
    authenticator = TestAuthenticator()
    http = settings or HttpSettings(wire=wire, rate_limit_enabled=rate_limiter is not None)
    site = build_site(files_router(library, limits, presigned_downloads=presigned),
                      http, rate_limiter=rate_limiter, authenticate=authenticator)
    port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    world = FilesWorld(database, storage, library, authenticator, events, port, limits,
                       presigned)
    try:
        yield world
    finally:
        pytest_twisted.blockon(port.stopListening())
        storage.stopService()
