"""Exit codes of a fatal start-up error (installsure.process), in a child process: the
behaviour lives in interpreter exit, which a test cannot run in its own process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent("""
    import atexit

    def said(text):
        return lambda: print(text, flush=True)

    atexit.register(said("handler registered at start"))
    from twisted.internet import reactor
    from installsure.process import exit_zero_after_graceful_stop, fail_and_stop

    # As build_service does: a failure must still exit non-zero.
    exit_zero_after_graceful_stop(reactor)
    atexit.register(said("handler registered before the failure"))

    def fail():
        fail_and_stop(reactor, "cannot start: {why}", code=3, why="a test")
        atexit.register(said("handler registered during shutdown"))

    def on_shutdown():
        atexit.register(said("handler registered by a stopping service"))

    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
    reactor.callWhenRunning(fail)
    reactor.run()
    print("reactor stopped", flush=True)
""")


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False, env={"PYTHONPATH": str(ROOT)},
    )


def test_fatal_error_exits_with_its_code_and_every_atexit_handler_runs_once() -> None:
    """fail_and_stop makes the process exit with its code, and every other atexit
    handler still runs exactly once: those registered before it (which a bare
    ``os._exit`` in a handler skipped), during the failure and during shutdown."""
    result = run_child(CHILD)
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for handler in ("handler registered at start", "handler registered before the failure",
                    "handler registered during shutdown",
                    "handler registered by a stopping service"):
        assert lines.count(handler) == 1, (handler, lines)
    assert lines[0] == "reactor stopped"
    assert "Traceback" not in result.stderr


def test_a_failing_handler_does_not_change_the_exit_code() -> None:
    """A handler that raises is reported (as interpreter exit reports it) and the others
    and the exit code are unaffected."""
    code = CHILD.replace(
        'atexit.register(said("handler registered before the failure"))',
        'atexit.register(said("handler registered before the failure"))\n'
        'atexit.register(lambda: 1 / 0)',
    )
    result = run_child(code)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert "handler registered at start" in result.stdout.splitlines()



GRACEFUL = textwrap.dedent("""
    import atexit

    class Lingering:
        def __del__(self):
            print("interpreter torn down", flush=True)

    kept = Lingering()
    atexit.register(lambda: print("handler registered at start", flush=True))
    from twisted.internet import reactor
    from installsure.process import exit_zero_after_graceful_stop

    exit_zero_after_graceful_stop(reactor)
    reactor.addSystemEventTrigger(
        "before", "shutdown",
        lambda: atexit.register(lambda: print("handler registered while stopping", flush=True)))
    reactor.callWhenRunning(reactor.stop)
    reactor.run()
    print("reactor stopped", flush=True)
""")


def test_a_graceful_stop_exits_0_after_every_handler_without_tearing_down() -> None:
    """After a stop that was not a failure the process exits 0 once every atexit handler
    has run (once each), without the interpreter's teardown (the object finalised only
    by it never says so): the services have closed what they hold already."""
    result = run_child(GRACEFUL)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "reactor stopped"
    assert sorted(lines[1:]) == ["handler registered at start",
                                 "handler registered while stopping"]
    assert "Traceback" not in result.stderr
