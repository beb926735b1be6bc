"""``python -m installsure``: operator commands that are not the server itself.

    python -m installsure migrate [--database-url URL] [--data-dir DIR] [--revision REV] [--sql]
    python -m installsure db current [--database-url URL] [--data-dir DIR]
    python -m installsure user create --email EMAIL [--role ROLE] [--name NAME]
                                      [--password-file FILE] [--config FILE] ...
    python -m installsure user set-password --email EMAIL [--password-file FILE] ...

``user`` never takes a password as an argument: it reads --password-file, standard input
or a prompt (``python -m installsure user --help``).

The server runs with ``twistd -n installsure``.
"""

from __future__ import annotations

import sys

USAGE = __doc__ or ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "db" and not rest:
        sys.stderr.write(f"installsure: `db` needs a sub-command\n{USAGE}")
        return 2
    if command == "user":
        from installsure.auth.cli import main as user_main

        return user_main(rest)
    if command in ("migrate", "db"):
        from installsure.db.cli import main as db_main

        return db_main(rest)
    sys.stderr.write(f"installsure: unknown command {command!r}\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
