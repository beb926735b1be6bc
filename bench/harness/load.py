"""HTTP load: wrk, or the fallback client in pyload.py, run as a pinned child process.

``LoadClient.start`` returns at once with a ``LoadRun``; ``LoadRun.wait`` returns its
``Measurement``. In between the benchmark may act on the server under load (signal it,
for one). ``LoadClient.measure`` is the usual warm-up, then measured run, with the
server's CPU time over the measured run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from harness import BenchError
from harness.children import Children, group_cpu_seconds

PYLOAD = Path(__file__).with_name("pyload.py")
#: The line both clients end their output with, then the figures as JSON.
REPORT_PREFIX = "INSTALLSURE_BENCH "

WRK_SCRIPT = r"""
-- Prints the run's figures as one JSON line that bench/harness/load.py parses.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "INSTALLSURE_BENCH {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"errors_connect\": %d, \"errors_read\": %d, \"errors_write\": %d, " ..
    "\"errors_status\": %d, \"errors_timeout\": %d, \"p50_us\": %.1f, " ..
    "\"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, \"mean_us\": %.1f}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Measurement:
    """One load run against one URL."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    client: str
    #: CPU seconds the server's processes used during the measured run (None when the
    #: server was started by someone else and we cannot see its processes).
    server_cpu_s: float | None = None
    #: CPU seconds the load generator used during the measured run.
    client_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu_s(self) -> float | None:
        """Requests per CPU second of the server: barely moved by other work on the box."""
        if not self.server_cpu_s:
            return None
        return self.requests / self.server_cpu_s

    @property
    def cpu_percent(self) -> float | None:
        if self.server_cpu_s is None or self.seconds <= 0:
            return None
        return 100 * self.server_cpu_s / self.seconds

    @property
    def client_cpu_percent(self) -> float | None:
        if self.client_cpu_s is None or self.seconds <= 0:
            return None
        return 100 * self.client_cpu_s / self.seconds


def choose_load_client(requested: str) -> str:
    """``wrk`` or ``python`` for ``--load-client auto|wrk|python``; says when it falls back."""
    if requested == "auto":
        if shutil.which("wrk"):
            return "wrk"
        print("wrk not found (apt-get install wrk): FALLING BACK to the built-in asyncio "
              "load client, which saturates sooner; figures are lower bounds.")
        return "python"
    if requested == "wrk" and shutil.which("wrk") is None:
        raise BenchError("--load-client wrk: wrk not found (apt-get install wrk)")
    return requested


@dataclass
class LoadRun:
    """A load generator under way; ``wait`` for its figures."""

    proc: subprocess.Popen[bytes]
    output: Path
    client: str
    duration: float
    children: Children

    def wait(self) -> Measurement:
        # Reaped with wait4, so the CPU time is the load generator's alone, whatever
        # else (a server that was stopped meanwhile) the benchmark reaps.
        deadline = time.monotonic() + self.duration + 30
        usage = None
        while usage is None and time.monotonic() < deadline:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                usage = rusage
            else:
                time.sleep(0.02)
        self.children.stop(self.proc, timeout=5)
        if usage is None:
            raise BenchError(f"{self.client} did not finish within {self.duration + 30:.0f} s")
        text = self.output.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith(REPORT_PREFIX):
                d = json.loads(line.removeprefix(REPORT_PREFIX))
                return Measurement(
                    requests=d["requests"],
                    seconds=d["duration_us"] / 1e6,
                    errors=sum(v for k, v in d.items() if k.startswith("errors_")),
                    p50_ms=d["p50_us"] / 1000,
                    p99_ms=d["p99_us"] / 1000,
                    client=self.client,
                    client_cpu_s=usage.ru_utime + usage.ru_stime,
                )
        raise BenchError(
            f"{self.client} printed no figures (exit {self.proc.returncode}):\n{text[-2000:]}"
        )


@dataclass
class LoadClient:
    """How load is made: which client, how many connections, on which CPUs."""

    kind: str  # "wrk" or "python"
    connections: int
    threads: int
    cpus: set[int] | None
    children: Children
    #: where the wrk script and the clients' output go
    folder: Path

    def __post_init__(self) -> None:
        (self.folder / "report.lua").write_text(WRK_SCRIPT)

    def start(self, url: str, duration: float,
              headers: Mapping[str, str] | None = None) -> LoadRun:
        sent = [f"{name}: {value}" for name, value in (headers or {}).items()]
        if self.kind == "wrk":
            argv = [
                "wrk", f"-t{self.threads}", f"-c{self.connections}",
                f"-d{max(1, round(duration))}s", "--timeout", "5s",
                "-s", str(self.folder / "report.lua"),
                *(arg for header in sent for arg in ("-H", header)), url,
            ]
        else:
            argv = [sys.executable, str(PYLOAD), *host_port_path(url), str(duration),
                    str(self.connections), *sent]
        output = self.folder / f"{self.kind}.out"
        output.write_bytes(b"")
        proc = self.children.spawn(argv, cwd=self.folder, env=dict(os.environ),
                                   output=output, cpus=self.cpus)
        return LoadRun(proc, output, self.kind, duration, self.children)

    def run(self, url: str, duration: float,
            headers: Mapping[str, str] | None = None) -> Measurement:
        return self.start(url, duration, headers).wait()

    def measure(
        self, url: str, *, duration: float, warmup: float, server_pgid: int | None,
        headers: Mapping[str, str] | None = None,
    ) -> Measurement:
        """An unmeasured warm-up, then the measured run with the server's CPU time;
        ``headers`` go with every request."""
        if warmup > 0:
            self.run(url, warmup, headers)
        if server_pgid is None:
            return self.run(url, duration, headers)
        before = group_cpu_seconds(server_pgid)
        m = self.run(url, duration, headers)
        return replace(m, server_cpu_s=group_cpu_seconds(server_pgid) - before)


def host_port_path(url: str) -> tuple[str, str, str]:
    """(host, port, path) of an http URL, as pyload.py takes them."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", str(parts.port or 80), parts.path or "/"
