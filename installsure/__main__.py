"""``python -m installsure``: operator commands that are not the server itself.

    python -m installsure migrate [--database-url URL] [--data-dir DIR] [--revision REV] [--sql]
    python -m installsure db current [--database-url URL] [--data-dir DIR]

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
    if command in ("migrate", "db"):
        from installsure.db.cli import main as db_main

        return db_main(rest)
    sys.stderr.write(f"installsure: unknown command {command!r}\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
