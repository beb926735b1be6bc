"""What the benchmarks in bench/ share.

A benchmark script next to this folder imports it as ``harness`` (Python puts a script's
own folder first on ``sys.path``):

* ``harness.children``: child processes that each lead their own process group, pinned
  to chosen CPUs, stopped with SIGTERM then SIGKILL on every exit path; the CPU time of
  a process group; the benchmark session (scratch folder, signals, clean-up);
* ``harness.servers``: how to start a server, wait until it answers, stop it;
* ``harness.peers``: other frameworks installed on demand into a cache folder (a pip
  venv, an npm folder);
* ``harness.load``: HTTP load with wrk, or with the fallback client in
  ``harness/pyload.py``, started and awaited separately so a run can do things meanwhile;
* ``harness.rounds``: alternating rounds, figures by round, medians and ratios;
* ``harness.tables``: aligned text tables;
* ``harness.private_redis``: a throw-away redis-server.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class BenchError(Exception):
    """A problem the user can act on; printed without a traceback."""


def run_cli(main: Callable[[], int]) -> int:
    """Run a benchmark's ``main``: exit 2 with the message on BenchError, 130 on Ctrl-C."""
    try:
        return main()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
