"""``python -m installsure user create|set-password``, run as operators run it (a child
process), on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import utils

from installsure.db.engine import create_engine_for
from installsure.db.migrate import upgrade
from installsure.db.tables import audit_log, sessions, users
from installsure.db.urls import parse_database_url
from tests.auth.conftest import MakeStack, Stack
from tests.e2e.server import child_environment

GOOD = "Marble-orchard-481"


def cli(database_url: str, tmp_path: Path, *args: str, stdin: str = "",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "installsure", "user", *args, "--database-url", database_url,
         "--data-dir", str(tmp_path / "data")],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
        env=child_environment({"INSTALLSURE_AUTH_ARGON2_MEMORY_KIB": "1024", **(env or {})}),
    )


def rows(database_url: str, query: object) -> list[object]:
    engine = create_engine_for(parse_database_url(database_url), pool_size=1)
    try:
        with engine.connect() as conn:
            return list(conn.execute(query).all())  # type: ignore[call-overload]
    finally:
        engine.dispose()


@pytest.fixture
def migrated(database_url: str) -> str:
    upgrade(database_url, "head")
    return database_url


def test_create_reads_the_password_from_stdin_or_a_file(migrated: str, tmp_path: Path) -> None:
    """``user create --role admin`` with the password on standard input makes an admin
    whose argon2id hash verifies; a second account from --password-file with no role
    becomes a member; an audit row names the command line as the actor."""
    first = cli(migrated, tmp_path, "create", "--email", "Ops@Example.com", "--role", "admin",
                "--name", "Operations", stdin=GOOD + "\n")
    assert first.returncode == 0, first.stderr
    assert "Created the admin account Ops@Example.com" in first.stdout
    secret = tmp_path / "password.txt"
    secret.write_text("Willow-compass-77\nignored second line\n")
    second = cli(migrated, tmp_path, "create", "--email", "dev@example.com",
                 "--password-file", str(secret))
    assert second.returncode == 0, second.stderr
    found = rows(migrated, select(users.c.email_key, users.c.role, users.c.name,
                                  users.c.password_hash).order_by(users.c.created_at))
    assert [(r[0], r[1], r[2]) for r in found] == [  # type: ignore[index]
        ("ops@example.com", "admin", "Operations"), ("dev@example.com", "member", "dev")]
    import argon2

    assert argon2.PasswordHasher().verify(found[1][3], "Willow-compass-77")  # type: ignore[index]
    actors = rows(migrated, select(audit_log.c.action, audit_log.c.actor_name))
    assert actors == [("user.created", "operator (command line)")] * 2


def test_create_refuses_weak_passwords_duplicates_and_argv_passwords(
    migrated: str, tmp_path: Path,
) -> None:
    """A weak password is refused with the policy's reasons (exit 1), an existing address
    too (exit 1), and a password given as an argument is not accepted at all (exit 2,
    not even as an abbreviation of --password-file)."""
    weak = cli(migrated, tmp_path, "create", "--email", "a@example.com", stdin="password1\n")
    assert weak.returncode == 1
    assert "at least 10 characters" in weak.stderr
    assert cli(migrated, tmp_path, "create", "--email", "a@example.com",
               stdin=GOOD + "\n").returncode == 0
    again = cli(migrated, tmp_path, "create", "--email", "A@example.com", stdin=GOOD + "\n")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    argv = cli(migrated, tmp_path, "create", "--email", "b@example.com", "--password", GOOD)
    assert argv.returncode == 2
    assert "unrecognized arguments" in argv.stderr
    assert rows(migrated, select(users.c.email_key)) == [("a@example.com",)]


def test_commands_need_a_current_schema(database_url: str, tmp_path: Path) -> None:
    """On a database that was never migrated the command says to migrate (exit 1)."""
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    answer = cli(database_url, tmp_path, "create", "--email", "c@example.com",
                 stdin=GOOD + "\n")
    assert answer.returncode == 1
    assert "python -m installsure migrate" in answer.stderr


@pytest_twisted.ensureDeferred
async def test_set_password_replaces_it_and_running_servers_refuse_old_tokens(
    make_stack: MakeStack, redis_server: object, database_url: str, tmp_path: Path,
) -> None:
    """``user set-password`` stores the new password, ends every session of the account
    in the database and announces it through Redis: a running server refuses the old
    access token at once, the old password no longer signs in, the new one does."""
    stack: Stack = await make_stack()
    signed = (await stack.register("kim@example.com")).data
    token = signed["accessToken"]
    assert (await stack.call("GET", "/api/auth/me", token=token)).status == 200
    env = child_environment({
        "INSTALLSURE_AUTH_ARGON2_MEMORY_KIB": "8", "INSTALLSURE_AUTH_ARGON2_TIME_COST": "1",
        "INSTALLSURE_AUTH_ARGON2_PARALLELISM": "1",
        "INSTALLSURE_REDIS_URL": redis_server.url,  # type: ignore[attr-defined]
        "INSTALLSURE_REDIS_KEY_PREFIX": "t:"})
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "installsure", "user", "set-password", "--email",
                         "kim@example.com", "--database-url", database_url,
                         "--data-dir", str(tmp_path / "data"), "--password-file", "-"],
        env=env, path=str(Path.cwd()), stdinBytes=b"Harbor-lantern-63\n")
    assert code == 0, err
    assert b"1 session(s) ended" in out
    assert b"warning" not in err, err
    assert (await stack.call("GET", "/api/auth/me", token=token)).status == 401
    assert (await stack.login("kim@example.com")).status == 401
    assert (await stack.login("kim@example.com", "Harbor-lantern-63")).status == 200
    reasons = await stack.database.run(lambda conn: conn.execute(
        select(sessions.c.revoked_reason)).scalars().all())
    assert "password_reset" in reasons


def test_set_password_for_an_unknown_address_fails(migrated: str, tmp_path: Path) -> None:
    """No account with that address: exit 1 saying so."""
    answer = cli(migrated, tmp_path, "set-password", "--email", "ghost@example.com",
                 stdin=GOOD + "\n")
    assert answer.returncode == 1
    assert "no account has the address ghost@example.com" in answer.stderr
