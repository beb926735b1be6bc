"""Child processes of a benchmark, the CPUs they run on, and the session that ends them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import BenchError

#: How long a child may take to exit after SIGTERM before its group gets SIGKILL.
STOP_TIMEOUT = 30.0


class Children:
    """Every child process the benchmark starts, so all of them end on any exit path.

    Each child leads its own process group (``start_new_session``): Ctrl-C in the
    terminal reaches only us, and we stop the children in order, and a child's own
    children (the embedded redis-server, uvicorn's workers) go with its group.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        output: Path,
        cpus: set[int] | None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with stdout and stderr appended to ``output``, on ``cpus``."""

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with output.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Before exec, so every thread the child makes inherits the CPU set.
                preexec_fn=pin if cpus else None,  # noqa: PLW1509 - we run no threads
            )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the leader (as an operator would), then SIGKILL whatever is left."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  pid {proc.pid} ignored SIGTERM for {timeout:.0f} s; killing it")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(reversed(self._procs)):
            self.stop(proc, timeout=10)


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every process in group ``pgid``.

    Counts all threads of each process (Node's GC and compiler threads, twistd's thread
    pool) and our server's embedded redis-server, which shares its group.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        # The command name may hold spaces and parentheses; fields follow the last ")".
        fields = raw[raw.rfind(")") + 2:].split()
        if len(fields) > 12 and int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def choose_cpus(pin: bool | None) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs), or (None, None) when not pinning.

    ``pin=None`` pins when there are at least 2 CPUs: the last one for the server, the
    others for the load generator.
    """
    available = sorted(os.sched_getaffinity(0))
    if pin is None:
        pin = len(available) >= 2
    if not pin:
        return None, None
    if len(available) < 2:
        raise BenchError("--pin needs at least 2 CPUs")
    return {available[-1]}, set(available[:-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Session:
    """What one benchmark run owns: its children and a scratch folder for their files."""

    children: Children
    workroot: Path
    #: Keep the scratch folder (the servers' data and logs) at the end; a run that
    #: measured everything clears it.
    keep: bool = True


@contextlib.contextmanager
def session(prefix: str = "installsure-bench-") -> Iterator[Session]:
    """A benchmark run whose children end however it ends (Ctrl-C, SIGTERM, an error)."""
    current = Session(Children(), Path(tempfile.mkdtemp(prefix=prefix)))

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Also when started with SIGINT ignored (a background job of a script), Ctrl-C or
    # kill -INT must still stop the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield current
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers")
        raise
    finally:
        # A second Ctrl-C must not leave servers behind; stopping is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        current.children.stop_all()
        if current.keep:
            print(f"the servers' data and logs are kept in {current.workroot}",
                  file=sys.stderr)
        else:
            shutil.rmtree(current.workroot, ignore_errors=True)
