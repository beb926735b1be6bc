"""Keeping the garbage collector's full passes short in a long-running server.

CPython's cyclic collector now and then walks every object it tracks. After start-up
that is several hundred thousand objects (SQLAlchemy, Alembic, Twisted, the schema,
the routes), nearly all of which live as long as the process, and each full pass over
them stopped the reactor for tens of milliseconds: under load those pauses were most
of the slowest 1 % of responses. So once the server is up, what start-up left behind
is collected once and then moved out of the collector's sight (``gc.freeze``); later
passes walk only what was made since. Cyclic garbage among the frozen objects would
never be freed, which is why the collection comes first.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

log = Logger()


def freeze_once_started(reactor: Any, started: Deferred[None]) -> None:
    """Collect, then freeze the heap when ``started`` has fired (successfully or not)
    and the reactor runs. Only for the server's own process: a test process would keep
    every object of the tests before it."""

    def freeze(_: object) -> None:
        began = time.perf_counter()
        gc.collect()
        gc.freeze()
        log.info("start-up heap frozen: {count} objects out of the collector's way "
                 "({ms:.0f} ms)", count=gc.get_freeze_count(),
                 ms=(time.perf_counter() - began) * 1000)

    reactor.callWhenRunning(lambda: started.addBoth(freeze))
