"""``python -m installsure migrate`` and ``python -m installsure db current``.

``main(argv)`` takes the arguments after the word ``migrate``::

    main(["--data-dir", "/var/lib/installsure"])          # migrate to head
    main(["--revision", "0001", "--sql"])                 # print the SQL instead

and, when ``argv`` starts with a sub-command, also serves ``db``::

    main(["current", "--database-url", url])              # where is the schema?
    main(["migrate", ...])                                # same as without the word
    main(["revision", "-m", "add users", "--autogenerate"])  # for developers

The database URL comes from ``--database-url``, else ``INSTALLSURE_DATABASE_URL``, else
SQLite in ``--data-dir`` (default ``./data``). Runnable as
``python -m installsure.db.cli``. Exit status: 0 done, 1 database error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from installsure.db.errors import DatabaseError
from installsure.db.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    script_directory,
    upgrade,
    upgrade_sql,
)
from installsure.db.urls import DatabaseURL, parse_database_url, sqlite_url_for

ENV_DATABASE_URL = "INSTALLSURE_DATABASE_URL"
_SUBCOMMANDS = ("migrate", "current", "revision")


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = "migrate"
    if args_list and args_list[0] in _SUBCOMMANDS:
        command = args_list.pop(0)
    parser = _parser(command)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as e:  # --help, or a usage error already printed by argparse
        return e.code if isinstance(e.code, int) else 2
    try:
        if command == "current":
            return _current(args, out)
        if command == "revision":
            return _revision(args, out)
        return _migrate(args, out)
    except DatabaseError as e:
        print(f"error: {e}", file=err)
        return 1


def _parser(command: str) -> argparse.ArgumentParser:
    prog = {
        "migrate": "python -m installsure migrate",
        "current": "python -m installsure db current",
        "revision": "python -m installsure.db.cli revision",
    }[command]
    description = {
        "migrate": "Upgrade the database schema (creating the database if needed).",
        "current": "Show the schema revision of the database and whether it is current.",
        "revision": "Create a new, numbered migration file (for developers).",
    }[command]
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--database-url",
        help=f"database URL (default: ${ENV_DATABASE_URL}, else SQLite in --data-dir)",
    )
    parser.add_argument(
        "--data-dir",
        default="./data",
        help="data directory holding installsure.db when no URL is given (default: ./data)",
    )
    if command == "migrate":
        parser.add_argument(
            "--revision",
            default="head",
            help="target revision (default: head); with --sql also FROM:TO",
        )
        parser.add_argument(
            "--sql",
            action="store_true",
            help="print the SQL instead of running it (for review or a DBA)",
        )
    if command == "revision":
        parser.add_argument("-m", "--message", required=True, help="what the migration does")
        parser.add_argument(
            "--autogenerate",
            action="store_true",
            help="fill in the changes between tables.py and the migrated schema",
        )
    return parser


def _database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    from_env = os.environ.get(ENV_DATABASE_URL, "").strip()
    if from_env:
        return from_env
    return sqlite_url_for(args.data_dir)


def _migrate(args: argparse.Namespace, out: TextIO) -> int:
    raw = _database_url(args)
    url = parse_database_url(raw)
    if args.sql:
        upgrade_sql(raw, args.revision, out)
        return 0
    result = upgrade(raw, args.revision)
    head = head_revision()
    if result.changed:
        print(
            f"Migrated {url.redacted} from {_name(result.before, head)} "
            f"to {_name(result.after, head)}.",
            file=out,
        )
    else:
        print(
            f"{url.redacted} is already at {_name(result.after, head)}; nothing to do.",
            file=out,
        )
    return 0


def _current(args: argparse.Namespace, out: TextIO) -> int:
    raw = _database_url(args)
    url = parse_database_url(raw)
    head = head_revision()
    path = url.sqlite_path
    if path is not None and not path.exists():
        # Opening it would create an empty file; just say there is nothing yet.
        print(
            f"{url.redacted}: no database yet; `python -m installsure migrate` creates it "
            f"(head is {head}).",
            file=out,
        )
        return 0
    revision = current_revision(raw)
    if revision == head:
        print(f"{url.redacted}: at {_name(revision, head)}.", file=out)
    else:
        print(
            f"{url.redacted}: at {_name(revision, head)}; this version needs {head}: run "
            f"`python -m installsure migrate`.",
            file=out,
        )
    return 0


def _revision(args: argparse.Namespace, out: TextIO) -> int:
    from alembic import command

    numbers = [int(rev) for rev in _all_revisions() if rev.isdigit()]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    if not args.autogenerate:
        command.revision(alembic_config(), message=args.message, rev_id=rev_id)
        print(f"Created migration {rev_id} in {MIGRATIONS_DIR / 'versions'}.", file=out)
        return 0
    with tempfile.TemporaryDirectory(prefix="installsure-autogen-") as scratch:
        # Compare tables.py against a scratch SQLite database migrated to head, unless
        # the developer names a database (to see PostgreSQL-specific differences).
        raw = args.database_url or sqlite_url_for(Path(scratch))
        upgrade(raw, "head")
        url = parse_database_url(raw)
        _autogenerate(url, args.message, rev_id)
    print(f"Created migration {rev_id} in {MIGRATIONS_DIR / 'versions'}; review it.", file=out)
    return 0


def _autogenerate(url: DatabaseURL, message: str, rev_id: str) -> None:
    from alembic import command

    from installsure.db.engine import create_engine_for

    engine = create_engine_for(url, pool_size=1)
    try:
        with engine.begin() as connection:
            cfg = alembic_config(url, connection=connection)
            command.revision(cfg, message=message, rev_id=rev_id, autogenerate=True)
    finally:
        engine.dispose()


def _all_revisions() -> list[str]:
    return [script.revision for script in script_directory().walk_revisions()]


def _name(revision: str | None, head: str) -> str:
    if revision is None:
        return "(empty)"
    return f"{revision} (head)" if revision == head else revision


if __name__ == "__main__":
    sys.exit(main())
