"""Run an EmbeddedRedisService in a process of its own (for the parent-death test).

Usage: python -m tests.redis.embedded_child DATA_DIR; prints "redis-pid <pid>" once the
child redis-server is running, then runs until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor

from installsure.redis.embedded import EmbeddedRedisService


def main() -> None:
    embedded = EmbeddedRedisService(Path(sys.argv[1]))

    def running(_: object) -> None:
        print(f"redis-pid {embedded.pid}", flush=True)

    def failed(failure: object) -> None:
        print(f"failed {failure}", flush=True)
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: (embedded.startService(), embedded.when_running().addCallbacks(running, failed))
    )
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
