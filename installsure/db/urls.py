"""Database URLs: validation, the driver we use per dialect, and a form safe for logs.

Operators write ``sqlite:///data/installsure.db`` or ``postgresql://user:pw@host/db``;
we map PostgreSQL onto psycopg 3 so nobody needs to know SQLAlchemy's driver names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from attrs import frozen
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from installsure.db.errors import DatabaseConfigError

Dialect = Literal["sqlite", "postgresql"]

DEFAULT_SQLITE_FILENAME = "installsure.db"

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+pysqlite"}
_EXAMPLES = "e.g. sqlite:///data/installsure.db or postgresql://user:password@host:5432/installsure"


@frozen
class DatabaseURL:
    """A checked database URL.

    ``url`` is what SQLAlchemy gets (driver filled in); ``redacted`` hides the password
    and is the only form that may appear in logs and messages.
    """

    url: URL
    dialect: Dialect

    @property
    def redacted(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def is_memory(self) -> bool:
        """An in-memory SQLite database, which lives and dies with its one connection."""
        return self.dialect == "sqlite" and self.url.database in (None, "", ":memory:")

    @property
    def sqlite_path(self) -> Path | None:
        if self.dialect != "sqlite" or self.is_memory:
            return None
        return Path(str(self.url.database))


def sqlite_url_for(data_dir: str | os.PathLike[str]) -> str:
    """The default database: ``<data-dir>/installsure.db`` as an absolute SQLite URL."""
    path = Path(data_dir).expanduser().resolve() / DEFAULT_SQLITE_FILENAME
    return f"sqlite:///{path}"


def parse_database_url(raw: str) -> DatabaseURL:
    """Check ``raw`` and return it with the driver we use; raise DatabaseConfigError if bad."""
    text = raw.strip()
    if not text:
        raise DatabaseConfigError(f"the database URL is empty; set it to a URL, {_EXAMPLES}")
    if "://" not in text:
        raise DatabaseConfigError(
            f"the database URL {_shown(text)!r} has no scheme; write it as a URL, {_EXAMPLES}"
        )
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as e:
        reason = "the port is not a number" if "int()" in str(e) else str(e)
        raise DatabaseConfigError(
            f"the database URL {_shown(text)!r} is malformed ({reason}); {_EXAMPLES}"
        ) from None
    scheme = url.drivername.lower()
    if scheme in _SQLITE_SCHEMES:
        url = url.set(drivername="sqlite")
        if url.database not in (None, "", ":memory:") and not str(url.database).startswith(
            "file:"
        ):
            # Pin a relative path to the directory we started in: a daemonizing twistd
            # changes directory later, and the database must not move with it.
            url = url.set(database=str(Path(str(url.database)).expanduser().resolve()))
        return DatabaseURL(url, "sqlite")
    if scheme in _POSTGRES_SCHEMES:
        if not url.host and not url.query.get("host"):
            raise DatabaseConfigError(
                f"the PostgreSQL URL {url.render_as_string(hide_password=True)!r} names no "
                f"host; write postgresql://user:password@host:5432/database"
            )
        if not url.database:
            raise DatabaseConfigError(
                f"the PostgreSQL URL {url.render_as_string(hide_password=True)!r} names no "
                f"database; add it after the host, e.g. postgresql://user@host:5432/installsure"
            )
        return DatabaseURL(url.set(drivername="postgresql+psycopg"), "postgresql")
    raise DatabaseConfigError(
        f"the database URL scheme {url.drivername!r} is not supported; InstallSure runs on "
        f"SQLite (sqlite:///path/to/file.db) or PostgreSQL via psycopg 3 "
        f"(postgresql://user:password@host:5432/database)"
    )


def _shown(text: str) -> str:
    """A malformed URL may still carry a password; show only what precedes any ``@``."""
    if "@" in text:
        scheme, _, rest = text.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return text
