"""``python -m installsure migrate`` / ``db current``, called as a function and as a process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, Table

from installsure.db import head_revision, metadata
from installsure.db.cli import ENV_DATABASE_URL, main
from tests.fixtures.redis import free_port

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


def test_migrate_creates_sqlite_in_data_dir(tmp_path: Path) -> None:
    """Without a URL, migrate creates <data-dir>/installsure.db at head and says so."""
    data = tmp_path / "data"
    code, out, err = run("--data-dir", str(data))
    assert (code, err) == (0, "")
    assert f"Migrated sqlite:///{data / 'installsure.db'}" in out
    assert f"from (empty) to {head_revision()} (head)" in out
    assert (data / "installsure.db").is_file()


def test_migrate_again_reports_nothing_to_do(tmp_path: Path) -> None:
    """A second migrate leaves the database alone and says it is already current."""
    run("--data-dir", str(tmp_path))
    code, out, _ = run("migrate", "--data-dir", str(tmp_path))
    assert code == 0
    assert "already at" in out
    assert "nothing to do" in out


def test_current_before_and_after_migrate(tmp_path: Path) -> None:
    """`db current` says there is no database yet (without creating one), then the
    revision once migrated."""
    code, out, _ = run("current", "--data-dir", str(tmp_path))
    assert code == 0
    assert "no database yet" in out
    assert not (tmp_path / "installsure.db").exists()
    run("--data-dir", str(tmp_path))
    code, out, _ = run("current", "--data-dir", str(tmp_path))
    assert code == 0
    assert out.strip().endswith(f"at {head_revision()} (head).")


def test_current_on_an_empty_database_points_at_migrate(database_url: str) -> None:
    """An existing but unmigrated database is reported as behind, naming the command."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).touch()  # an empty SQLite database
    code, out, _ = run("current", "--database-url", database_url)
    assert code == 0
    assert "at (empty)" in out
    assert "python -m installsure migrate" in out


def test_migrate_and_current_on_both_dialects(database_url: str) -> None:
    """The URL option works for SQLite and PostgreSQL alike."""
    assert run("--database-url", database_url)[0] == 0
    code, out, _ = run("current", "--database-url", database_url)
    assert code == 0
    assert f"{head_revision()} (head)" in out


def test_environment_url_is_used_and_option_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INSTALLSURE_DATABASE_URL beats --data-dir; --database-url beats both."""
    from_env = tmp_path / "env.db"
    monkeypatch.setenv(ENV_DATABASE_URL, f"sqlite:///{from_env}")
    run("--data-dir", str(tmp_path / "data"))
    assert from_env.is_file()
    assert not (tmp_path / "data").exists()
    from_option = tmp_path / "option.db"
    run("--database-url", f"sqlite:///{from_option}")
    assert from_option.is_file()


def test_sql_prints_ddl_without_touching_the_database(tmp_path: Path) -> None:
    """--sql prints the migration's SQL and creates nothing."""
    code, out, _ = run("--data-dir", str(tmp_path), "--sql")
    assert code == 0
    assert "CREATE TABLE app_meta" in out
    assert not (tmp_path / "installsure.db").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--database-url", "mysql://root@localhost/x"], "scheme 'mysql' is not supported"),
        (["--database-url", f"postgresql://u:pw@127.0.0.1:{free_port()}/x"], "cannot reach"),
        (["--data-dir", "/etc/hostname/sub"], "is a file, not a directory"),
        (["current", "--database-url", "nonsense"], "has no scheme"),
        (["--data-dir", "/tmp", "--revision", "no-such-rev"], "Can't locate revision"),
    ],
)
def test_errors_are_one_clear_line_and_exit_1(argv: list[str], expected: str) -> None:
    """Database problems print `error: ...` on stderr, no traceback, and exit 1."""
    code, out, err = run(*argv)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ")
    assert expected in err
    assert "Traceback" not in err
    assert ":pw@" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown option is a usage error (argparse's message, exit status 2)."""
    assert main(["--frobnicate"]) == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("migrate", "current"),
    [
        (["installsure.db.cli", "migrate"], ["installsure.db.cli", "current"]),
        (["installsure", "migrate"], ["installsure", "db", "current"]),
    ],
    ids=["db.cli", "installsure"],
)
def test_runs_as_a_command_in_a_subprocess(
    tmp_path: Path, migrate: list[str], current: list[str]
) -> None:
    """`python -m installsure migrate` / `db current` (and the db.cli module itself)
    work as commands in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(ENV_DATABASE_URL, None)
    for argv, expected in (
        ([*migrate, "--data-dir", str(tmp_path)], "Migrated"),
        ([*current, "--data-dir", str(tmp_path)], f"at {head_revision()} (head)"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", *argv],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout


def test_revision_autogenerate_writes_the_next_numbered_migration(
    scratch_migrations: Path,
) -> None:
    """A table added to tables.py becomes the next numbered migration with its
    create_table, found by comparing against a scratch database at head."""
    head = head_revision()
    following = f"{int(head) + 1:04d}"
    widgets = Table("widgets", metadata, Column("id", Integer, primary_key=True))
    try:
        code, out, err = run("revision", "-m", "add widgets", "--autogenerate")
    finally:
        metadata.remove(widgets)
    assert (code, err) == (0, ""), err
    assert f"Created migration {following}" in out
    created = scratch_migrations / "versions" / f"{following}_add_widgets.py"
    source = created.read_text()
    assert "op.create_table('widgets'" in source or 'op.create_table("widgets"' in source
    assert f"down_revision: str | None = '{head}'" in source
