"""``python -m installsure user create|set-password``: accounts from the command line.

::

    python -m installsure user create --email ada@example.com --role admin [--name Ada]
    python -m installsure user set-password --email ada@example.com

The password is never an argument (it would sit in the shell history and in every
``ps`` listing): it comes from ``--password-file FILE`` (its first line; ``-`` reads
standard input), else from standard input when that is not a terminal (``echo ... |``),
else from a prompt asked twice. It must pass the same policy as the API's.

Settings (argon2 parameters, the minimum length, where the database and Redis are) come
from the server's configuration: ``--config FILE``, the ``INSTALLSURE_*`` environment
and the options below, as for ``twistd -n installsure``. The schema must be current
(``python -m installsure migrate``). ``set-password`` ends the account's sessions; it
announces that through Redis when it can reach it, so running servers refuse the old
access tokens at once (otherwise they lapse within ``auth.access_token_ttl``).

Exit status: 0 done, 1 refused (an account exists, none found, a weak password, the
database), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine

from installsure.auth.audit import account_event, record_account_change
from installsure.auth.password_policy import password_problems
from installsure.auth.passwords import PasswordHasher
from installsure.config import Config, ConfigError, load_config
from installsure.db.engine import create_engine_for
from installsure.db.errors import DatabaseError
from installsure.db.migrate import current_revision, head_revision
from installsure.db.sessions import revoke_user_sessions
from installsure.db.urls import parse_database_url
from installsure.db.users import EmailTaken, get_user_by_email, insert_user, set_password_hash

ROLES = ("admin", "manager", "member", "viewer")
ANNOUNCE_TIMEOUT = 5.0


class CliError(Exception):
    """Refused: the message says why (exit status 1)."""


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdin, out, err = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_usage(err)
        return 2
    try:
        config = load_config(config_file=args.config, options={
            "data_dir": args.data_dir, "database.url": args.database_url,
            "redis.url": args.redis_url})
    except ConfigError as error:
        print(error.report(), file=err)
        return 2
    try:
        password = _read_password(args.password_file, stdin, err)
        if args.command == "create":
            _create(config, args.email, args.name or args.email.partition("@")[0],
                    args.role, password, out=out)
        else:
            _set_password(config, args.email, password, out, err)
    except CliError as error:
        print(f"error: {error}", file=err)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: "--password x" must not be taken for "--password-file x".
    parser = argparse.ArgumentParser(prog="python -m installsure user", allow_abbrev=False,
                                     description="Create accounts and set passwords.")
    commands = parser.add_subparsers(dest="command")
    create = commands.add_parser("create", help="create an account", allow_abbrev=False)
    create.add_argument("--name", help="display name (default: the e-mail's name part)")
    create.add_argument("--role", choices=ROLES,
                        help="global role (default: admin on an empty system, else member)")
    reset = commands.add_parser("set-password", allow_abbrev=False,
                                help="set an account's password and end its sessions")
    for command in (create, reset):
        command.add_argument("--email", required=True, help="the account's e-mail address")
        command.add_argument("--password-file", metavar="FILE",
                             help="read the password from FILE's first line ('-': stdin)")
        command.add_argument("--config", metavar="FILE", help="the server's TOML config")
        command.add_argument("--data-dir", help="data directory (default ./data)")
        command.add_argument("--database-url", help="database URL (default: the config's)")
        command.add_argument("--redis-url", help="Redis URL (default: the config's)")
    return parser


def _read_password(password_file: str | None, stdin: TextIO, err: TextIO) -> str:
    if password_file == "-":  # noqa: S105 - the name for standard input
        text = stdin.readline()
    elif password_file:
        try:
            text = Path(password_file).read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError, UnicodeDecodeError) as error:
            raise CliError(f"cannot read a password from {password_file!r}: {error}") from None
    elif not stdin.isatty():
        text = stdin.readline()
    else:
        text = getpass.getpass("Password: ", stream=err)
        if getpass.getpass("Again: ", stream=err) != text:
            raise CliError("the two passwords differ")
    password = text.rstrip("\r\n")
    if not password:
        raise CliError("no password given (use --password-file, standard input or the prompt)")
    return password


def _check_policy(config: Config, password: str, email: str) -> None:
    problems = password_problems(password, email, min_length=config.auth.password_min_length)
    if problems:
        raise CliError("the password " + "; ".join(problems))


def _engine(config: Config) -> Engine:
    url = parse_database_url(config.database_url)
    try:
        revision = current_revision(config.database_url)
    except DatabaseError as error:
        raise CliError(str(error)) from None
    if revision != head_revision():
        raise CliError(f"the database {url.redacted} is at schema {revision or '(empty)'}, "
                       f"not {head_revision()}: run `python -m installsure migrate` first")
    return create_engine_for(url, pool_size=1)


def _hasher(config: Config) -> PasswordHasher:
    return PasswordHasher.from_settings(config.auth)


def _create(config: Config, email: str, name: str, role: str | None, password: str, *,
            out: TextIO) -> None:
    _check_policy(config, password, email)
    engine = _engine(config)
    try:
        with engine.begin() as conn:
            if get_user_by_email(conn, email) is not None:
                raise CliError(f"an account with the address {email} exists already")
        password_hash = _hasher(config).hash_now(password)
        with engine.begin() as conn:
            try:
                user = insert_user(conn, email=email, name=name, password_hash=password_hash,
                                   role=role, now=datetime.now(UTC))
            except EmailTaken:
                raise CliError(f"an account with the address {email} exists already") from None
            record_account_change(conn, actor=None, action="user.created", user_id=user.id,
                                  changes={"role": [None, user.role]})
    finally:
        engine.dispose()
    account_event("user.created", user_id=user.id, actor=None, role=user.role)
    print(f"Created the {user.role} account {user.email} (id {user.id}).", file=out)


def _set_password(config: Config, email: str, password: str, out: TextIO,
                  err: TextIO) -> None:
    _check_policy(config, password, email)
    engine = _engine(config)
    try:
        with engine.begin() as conn:
            user = get_user_by_email(conn, email)
        if user is None:
            raise CliError(f"no account has the address {email}")
        password_hash = _hasher(config).hash_now(password)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            set_password_hash(conn, user.id, password_hash, now)
            ended = revoke_user_sessions(conn, user.id, "password_reset", now,
                                         access_ttl=config.auth.access_token_ttl)
            record_account_change(conn, actor=None, action="user.password_changed",
                                  user_id=user.id)
    finally:
        engine.dispose()
    account_event("user.password_changed", user_id=user.id, actor=None,
                  endedSessions=len(ended))
    print(f"Set the password of {user.email}; {len(ended)} session(s) ended.", file=out)
    if ended:
        # Imported here: it brings txredisapi, which installs a reactor.
        from installsure.auth.cli_announce import announce_revocations

        problem = announce_revocations(config, ended, timeout=ANNOUNCE_TIMEOUT)
        if problem is not None:
            print(f"warning: could not tell running servers through Redis ({problem}); "
                  f"their access tokens lapse within {config.auth.access_token_ttl:g} s",
                  file=err)
