"""The authenticated project read: one SQLite file with users, projects, members and
files that our server and the FastAPI peer both serve, and an access token for it.

``GET /api/projects/{id}`` as a member: verify the bearer token, check its session is
not revoked, check the caller's membership, read the project row with its file count.
``prepare`` migrates a fresh SQLite database with our migrations (both servers read
the same schema), fills it and signs an HS256 token (PyJWT) for one member.
"""

from __future__ import annotations

import random
import secrets
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from harness import BenchError
from harness.servers import RunningServer

#: How the route is named in the tables (the URL has one project's id).
PROJECT_ROUTE = "/api/projects/{id}"
#: The claims our server's tokens will carry (and the bench authenticators check).
ISSUER = "installsure"
AUDIENCE = "installsure-api"
TOKEN_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class AuthFixture:
    """The shared database, the key the token is signed with, the token, the project."""

    database: Path
    secret: str
    token: str
    project_id: str
    counts: str

    @property
    def path(self) -> str:
        return PROJECT_ROUTE.replace("{id}", self.project_id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _imports() -> tuple[object, object]:
    try:
        import jwt
    except ImportError:
        raise BenchError(
            "the authenticated route needs PyJWT in this venv (pip install '.[test]'), or "
            "run with --no-project-route"
        ) from None
    try:
        from installsure.db import migrate
    except ImportError:
        raise BenchError("run the benchmark with the project's venv (installsure importable)") \
            from None
    return jwt, migrate


def prepare(folder: Path, *, users: int = 1000, projects: int = 2000,
            seed: int = 9) -> AuthFixture:
    """A migrated SQLite database in ``folder`` with ``users`` users, ``projects``
    projects of three members each and a few files each; a token of one member."""
    jwt, migrate = _imports()
    from sqlalchemy import create_engine, insert

    from installsure.db.tables import files, project_members, sessions
    from installsure.db.tables import projects as projects_table
    from installsure.db.tables import users as users_table

    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "bench.db"
    url = f"sqlite:///{database}"
    migrate.upgrade(url)  # type: ignore[attr-defined]
    rng = random.Random(seed)
    now = datetime.now(UTC)
    user_ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(users)]
    project_ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(projects)]
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(insert(users_table), [
            {"id": uid, "email": f"user{n}@bench.test", "email_key": f"user{n}@bench.test",
             "name": f"User {n}", "password_hash": "x", "role": "member",
             "created_at": now, "updated_at": now}
            for n, uid in enumerate(user_ids)])
        c.execute(insert(projects_table), [
            {"id": pid, "name": f"Project {n}", "name_key": f"project {n}",
             "description": "Offices and a car park, phase two", "status": "active",
             "progress": n % 101, "budget": 1_250_000.5, "start_date": date(2026, 1, 5),
             "end_date": date(2027, 6, 30), "contractor": "Acme Construction",
             "location": "Bergen", "created_by": user_ids[n % users], "created_at": now,
             "updated_at": now, "version": 1}
            for n, pid in enumerate(project_ids)])
        members = []
        for n, pid in enumerate(project_ids):
            for k, role in enumerate(("owner", "editor", "viewer")):
                members.append({"project_id": pid, "user_id": user_ids[(n + k * 7) % users],
                                "role": role, "added_at": now})
        c.execute(insert(project_members), members)
        c.execute(insert(files), [
            {"id": str(uuid.uuid4()), "project_id": pid, "storage_key": f"k/{pid}/{k}",
             "original_name": f"plan-{k}.pdf", "mime_type": "application/pdf",
             "extension": "pdf", "size": 1000 + k, "sha256": "0" * 64, "created_at": now}
            for pid in project_ids[::4] for k in range(3)])
        # The member we call as: the editor of the first project.
        caller = user_ids[7 % users]
        session_id = str(uuid.uuid4())
        c.execute(insert(sessions).values(id=session_id, user_id=caller, created_at=now,
                                          expires_at=now + TOKEN_LIFETIME))
    engine.dispose()
    secret = secrets.token_urlsafe(48)
    issued = int(time.time())
    token = jwt.encode(  # type: ignore[attr-defined]
        {"sub": caller, "role": "member", "sid": session_id, "jti": str(uuid.uuid4()),
         "iss": ISSUER, "aud": AUDIENCE, "iat": issued,
         "exp": issued + int(TOKEN_LIFETIME.total_seconds())},
        secret, algorithm="HS256")
    counts = (f"{users} users, {projects} projects of 3 members, {len(project_ids[::4]) * 3} "
              "files")
    return AuthFixture(database, secret, token, project_ids[0], counts)


def check_answers(server: RunningServer, path: str, headers: dict[str, str]) -> None:
    """The authenticated route answers 200 JSON before it is loaded (a 401 or 404 at
    full speed would measure the wrong thing)."""
    request = urllib.request.Request(server.base_url + path, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except OSError as exc:
        raise BenchError(f"{server.spec.name} did not answer {path}: {exc}") from None
    if status != 200:
        raise BenchError(f"{server.spec.name} answered {path} with {status}: "
                         f"{body[:300]!r}")
