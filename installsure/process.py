"""Ending the process: the exit code after a fatal start-up error or a drain, and a
second stop signal during a drain (:class:`StopSignals`).

twistd always exits 0 once its reactor has stopped. A server that cannot listen on its
port or open its data must exit non-zero so systemd and scripts notice, yet it must
still stop its services in order (the embedded redis-server child must not be orphaned).
So we stop the reactor normally and set the exit code at interpreter exit, after twistd
has finished its own clean-up.

Only ``os._exit`` sets the exit code that late, and it ends the process on the spot:
``atexit`` runs handlers last-registered first, so every handler registered before ours
would be skipped (log flushing, coverage, ``logging.shutdown``). Ours therefore runs
first (it is moved to the end of the list once the reactor has stopped), runs all the
other handlers itself, and only then exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from installsure._compat import clear_exit_signal
from installsure.logs import flush_logs

log = Logger()

_exit_code: int | None = None


def _exit_with_code() -> None:
    if _exit_code is None:
        return
    atexit.unregister(_exit_with_code)
    # CPython's own runner of the handlers (what interpreter exit calls); it runs each
    # remaining one once, reporting rather than raising their errors, and clears them.
    atexit._run_exitfuncs()
    flush_logs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed: nothing left to lose
            stream.flush()
    os._exit(_exit_code)


def _run_first_at_exit() -> None:
    """Put our handler last in atexit's list, which it runs first."""
    atexit.unregister(_exit_with_code)
    atexit.register(_exit_with_code)


def fail_and_stop(reactor: IReactorCore, message: str, code: int = 1, **fields: object) -> None:
    """Log ``message`` as critical, stop the reactor, and make the process exit ``code``."""
    global _exit_code  # noqa: PLW0603 - one process, one exit code
    log.critical(message, **fields)
    if _exit_code is None:
        _run_first_at_exit()
        # Shutdown may import modules that register handlers of their own; once the
        # reactor has stopped, nothing of ours runs again, so ours goes last then.
        reactor.addSystemEventTrigger("after", "shutdown", _run_first_at_exit)
    _exit_code = code
    if reactor.running:
        reactor.stop()
    else:
        reactor.callWhenRunning(reactor.stop)


def stopping_on_error() -> bool:
    """Whether :func:`fail_and_stop` has been called: the process is ending on an error."""
    return _exit_code not in (None, 0)


def exit_zero_after_graceful_stop(reactor: IReactorCore) -> None:
    """Exit 0, not "killed by SIGTERM", once a SIGTERM/SIGINT stop has drained cleanly,
    and exit as soon as twistd is done.

    twistd re-raises the signal that stopped the reactor after it has shut down, so the
    exit status reads as a crash to shell scripts and process supervisors. Our stop is
    an orderly drain, so we report it as a success.

    By then every service has stopped and closed what it holds; what is left of interpreter
    exit is tearing the interpreter down, whose collections of every object cost a second
    or more (three under load, on a small machine) before the process ends and the
    supervisor may start the next one. So the exit takes the same path as a fatal error's
    (see the module docstring): every atexit handler runs, logs and standard streams are
    flushed, then ``os._exit(0)``.
    """

    def forget_signal() -> None:
        global _exit_code  # noqa: PLW0603 - one process, one exit code
        if _exit_code is None:
            clear_exit_signal(reactor)
            _exit_code = 0
            _run_first_at_exit()

    reactor.addSystemEventTrigger("after", "shutdown", forget_signal)


class StopSignals:
    """SIGTERM and SIGINT, handled on the reactor thread; a second one goes to the drain.

    Twisted's own handlers log from inside the signal handler, which runs on the main
    thread between any two bytecodes, also while that thread is in the middle of
    writing log lines under a lock that is not reentrant: under load a SIGTERM then
    deadlocks the process, which never stops. Once the reactor runs, :meth:`install`
    replaces the reactor's handlers (and only those: a handler someone else put in
    place, a debugger's, stays) with one that does nothing in the handler but ask the
    reactor thread to act, as Twisted's do for the stop itself.

    The first signal stops the reactor, which starts the drain. Twisted's handlers ask
    for a stop on every signal, and one asked for while stopping only logs a
    ReactorNotRunning traceback; here a later signal calls the callable given to
    :meth:`catch` (the drain's ``skip_delay``) instead. :meth:`release` puts the
    reactor's handlers back once the process has stopped.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._saved: dict[int, Any] = {}
        self._on_repeat: Callable[[int], None] | None = None
        self._stopping = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works on the main thread only
        theirs = {getattr(self.reactor, "sigTerm", None), getattr(self.reactor, "sigInt", None)}
        for number in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(number)
            if current in theirs and number not in self._saved:
                self._saved[number] = current
                signal.signal(number, self._received)

    def catch(self, on_repeat: Callable[[int], None]) -> None:
        """From now on a stop signal calls ``on_repeat(signal number)``: the process is
        stopping already (whatever stopped it)."""
        self._on_repeat = on_repeat
        self._stopping = True

    def _received(self, number: int, _frame: object) -> None:
        # Nothing else here: no logging, no locks (see the class docstring).
        self.reactor.callFromThread(self._act, number)

    def _act(self, number: int) -> None:
        name = signal.Signals(number).name
        if not self._stopping:
            self._stopping = True
            log.info("received {signal}, stopping", signal=name)
            try:
                self.reactor.stop()
            except ReactorNotRunning:
                pass
            else:
                return
        log.info("received {signal} while stopping", signal=name)
        if self._on_repeat is not None:
            self._on_repeat(number)

    def release(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        saved, self._saved = self._saved, {}
        for number, handler in saved.items():
            if signal.getsignal(number) == self._received:
                signal.signal(number, handler)
