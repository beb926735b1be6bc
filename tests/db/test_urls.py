"""Database URL checking: what we accept, the driver we pick, the messages we give."""

from __future__ import annotations

from pathlib import Path

import pytest

from installsure.db import DatabaseConfigError, parse_database_url, sqlite_url_for


def test_sqlite_file_url_keeps_its_path() -> None:
    """A SQLite URL names a file; the path survives parsing unchanged."""
    url = parse_database_url("sqlite:////var/lib/installsure/installsure.db")
    assert url.dialect == "sqlite"
    assert url.sqlite_path == Path("/var/lib/installsure/installsure.db")
    assert not url.is_memory


@pytest.mark.parametrize("raw", ["sqlite://", "sqlite:///:memory:"])
def test_sqlite_memory_urls_are_recognised(raw: str) -> None:
    """Both spellings of an in-memory SQLite database are recognised as such."""
    url = parse_database_url(raw)
    assert url.is_memory
    assert url.sqlite_path is None


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://app:secret@db.example:5432/installsure",
        "postgres://app:secret@db.example:5432/installsure",
        "postgresql+psycopg://app:secret@db.example:5432/installsure",
    ],
)
def test_postgres_urls_use_psycopg3(raw: str) -> None:
    """Every PostgreSQL spelling is driven by psycopg 3, whatever the operator wrote."""
    url = parse_database_url(raw)
    assert url.dialect == "postgresql"
    assert url.url.drivername == "postgresql+psycopg"
    assert url.url.host == "db.example"
    assert url.url.database == "installsure"


def test_redacted_url_hides_the_password() -> None:
    """The loggable form of a URL never contains the password."""
    url = parse_database_url("postgresql://app:s3cret-pw@db.example/installsure")
    assert "s3cret-pw" not in url.redacted
    assert "app:***@db.example" in url.redacted


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("installsure.db", "no scheme"),
        ("mysql://root@localhost/installsure", "scheme 'mysql' is not supported"),
        ("postgresql://app:pw@db.example:notaport/x", "port is not a number"),
        ("postgresql:///installsure", "names no host"),
        ("postgresql://db.example", "names no database"),
    ],
)
def test_bad_urls_get_a_message_saying_what_to_do(raw: str, expected: str) -> None:
    """Each kind of bad URL is refused with a message naming the problem and an example."""
    with pytest.raises(DatabaseConfigError) as caught:
        parse_database_url(raw)
    message = str(caught.value)
    assert expected in message
    assert "://" in message  # every message shows a URL to copy


def test_malformed_url_message_does_not_leak_the_password() -> None:
    """Even a URL we cannot parse has its password kept out of the error message."""
    with pytest.raises(DatabaseConfigError) as caught:
        parse_database_url("postgresql://app:hunter2@db.example:notaport/x")
    assert "hunter2" not in str(caught.value)


def test_sqlite_url_for_data_dir_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default database lives at <data-dir>/installsure.db, made absolute so a later
    change of working directory cannot move it."""
    monkeypatch.chdir(tmp_path)
    url = parse_database_url(sqlite_url_for("data"))
    assert url.sqlite_path == tmp_path / "data" / "installsure.db"


def test_relative_sqlite_path_is_pinned_to_the_start_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative SQLite path is resolved when parsed, so a later chdir (twistd
    daemonizing) cannot make the service open a different file."""
    monkeypatch.chdir(tmp_path)
    url = parse_database_url("sqlite:///data/app.db")
    assert url.sqlite_path == tmp_path / "data" / "app.db"
    assert url.redacted == f"sqlite:///{tmp_path}/data/app.db"
