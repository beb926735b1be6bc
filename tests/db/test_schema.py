"""The domain schema: tables.py and the migrations agree, every migration goes down and
up again, and the constraints hold on both dialects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect
from sqlalchemy.exc import IntegrityError

from installsure.db import parse_database_url, upgrade
from installsure.db.engine import create_engine_for
from installsure.db.migrate import alembic_config, script_directory
from installsure.db.tables import metadata, project_members, projects, users

DOMAIN_TABLES = {
    "users", "sessions", "refresh_tokens", "projects", "project_members", "files", "audit_log",
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(parse_database_url(database_url), pool_size=1)
    yield engine
    engine.dispose()


def _user(role: str = "member") -> dict[str, object]:
    user_id = str(uuid.uuid4())
    return {"id": user_id, "email": f"{user_id}@example.com", "email_key": f"{user_id}@example.com",
            "name": "A. Builder", "password_hash": "$argon2id$placeholder", "role": role}


def test_tables_py_matches_the_migrations(database_url: str, engine: Engine) -> None:
    """After every migration, the database has exactly the tables, columns, indexes and
    constraints tables.py declares (autogenerate finds nothing to add or drop)."""
    upgrade(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []
    assert set(inspect(engine).get_table_names()) >= DOMAIN_TABLES


def test_every_migration_goes_down_and_up_again(database_url: str, engine: Engine) -> None:
    """Each revision downgrades to the one before and upgrades back, down to an empty
    database, so an operator can roll a release back."""
    upgrade(database_url)
    revisions = [r.revision for r in script_directory().walk_revisions()]  # newest first
    url = parse_database_url(database_url)
    for revision in revisions:
        with engine.begin() as connection:
            command.downgrade(alembic_config(url, connection=connection), "-1")
        with engine.connect() as connection:
            now = MigrationContext.configure(connection).get_current_revision()
        below = script_directory().get_revision(revision).down_revision
        assert now == below
    assert not DOMAIN_TABLES & set(inspect(engine).get_table_names())
    assert upgrade(database_url).after == revisions[0]
    assert set(inspect(engine).get_table_names()) >= DOMAIN_TABLES


def test_email_and_project_name_keys_are_unique(database_url: str, engine: Engine) -> None:
    """Two accounts with one folded e-mail, or two projects with one folded name, are
    refused by the database itself (the last line of defence against a race)."""
    upgrade(database_url)
    first = _user()
    with engine.begin() as connection:
        connection.execute(insert(users), [first])
    clash = _user() | {"email_key": first["email_key"]}
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(users), [clash])
    row = {"id": str(uuid.uuid4()), "name": "Tower A", "name_key": "tower a"}
    with engine.begin() as connection:
        connection.execute(insert(projects), [row])
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(projects), [row | {"id": str(uuid.uuid4()), "name": "TOWER A"}])


@pytest.mark.parametrize(
    ("table", "bad"),
    [
        ("users", {"role": "superuser"}),
        ("projects", {"status": "done"}),
        ("projects", {"progress": 101}),
        ("projects", {"budget": -1}),
        ("members", {"role": "admin"}),
    ],
)
def test_check_constraints_refuse_values_outside_the_contract(
    database_url: str, engine: Engine, table: str, bad: dict[str, object]
) -> None:
    """Roles, statuses and ranges outside API.md's lists are refused by CHECK constraints."""
    upgrade(database_url)
    owner = _user()
    project = {"id": str(uuid.uuid4()), "name": "P", "name_key": "p"}
    with engine.begin() as connection:
        connection.execute(insert(users), [owner])
        connection.execute(insert(projects), [project])
    rows = {
        "users": (users, _user() | bad),
        "projects": (projects, {"id": str(uuid.uuid4()), "name": "Q", "name_key": "q"} | bad),
        "members": (project_members,
                    {"project_id": project["id"], "user_id": owner["id"], "role": "owner"} | bad),
    }
    target, row = rows[table]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(target), [row])


def test_deleting_a_project_removes_its_members(database_url: str, engine: Engine) -> None:
    """Foreign keys cascade on both dialects (SQLite's are switched on per connection)."""
    upgrade(database_url)
    owner = _user()
    project = {"id": str(uuid.uuid4()), "name": "P", "name_key": "p"}
    with engine.begin() as connection:
        connection.execute(insert(users), [owner])
        connection.execute(insert(projects), [project])
        connection.execute(insert(project_members),
                           [{"project_id": project["id"], "user_id": owner["id"], "role": "owner"}])
        connection.execute(projects.delete())
        assert connection.execute(project_members.select()).all() == []
