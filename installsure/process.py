"""Ending the process on a fatal start-up error with a non-zero exit code.

twistd always exits 0 once its reactor has stopped. A server that cannot listen on its
port or open its data must exit non-zero so systemd and scripts notice, yet it must
still stop its services in order (the embedded redis-server child must not be orphaned).
So we stop the reactor normally and set the exit code at interpreter exit, after twistd
has finished its own clean-up.
"""

from __future__ import annotations

import atexit
import os
import sys

from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from installsure.logs import flush_logs

log = Logger()

_exit_code: int | None = None


def _exit_with_code() -> None:
    if _exit_code is not None:
        flush_logs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_code)


def fail_and_stop(reactor: IReactorCore, message: str, code: int = 1, **fields: object) -> None:
    """Log ``message`` as critical, stop the reactor, and make the process exit ``code``."""
    global _exit_code  # noqa: PLW0603 - one process, one exit code
    log.critical(message, **fields)
    if _exit_code is None:
        atexit.register(_exit_with_code)
    _exit_code = code
    if reactor.running:
        reactor.stop()
    else:
        reactor.callWhenRunning(reactor.stop)


def exit_zero_after_graceful_stop(reactor: IReactorCore) -> None:
    """Exit 0, not "killed by SIGTERM", once a SIGTERM/SIGINT stop has drained cleanly.

    twistd re-raises the signal that stopped the reactor after it has shut down, so the
    exit status reads as a crash to shell scripts and process supervisors. Our stop is
    an orderly drain, so we report it as a success. (twistd keeps the signal on the
    reactor's private ``_exitSignal``; clearing it is the only hook it offers.)
    """

    def forget_signal() -> None:
        if _exit_code is None and hasattr(reactor, "_exitSignal"):
            reactor._exitSignal = None

    reactor.addSystemEventTrigger("after", "shutdown", forget_signal)
