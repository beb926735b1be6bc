"""The shutdown run of the HTTP benchmark (``http_bench.py --shutdown``).

Round by round, for each of our wires: start the server with ``shutdown.delay`` set,
load ``/livez`` at full speed (wrk, or the fallback client), SIGTERM the server after
``--shutdown-after`` seconds and measure

* **dropped**: requests written on an open connection and never answered (the load
  client's read, write and timeout errors; connections refused once the listener has
  closed are not drops: nothing was written on them). The target is 0;
* **SIGTERM to exit**: until the server's process has ended (its embedded Redis
  included: the process stops it before exiting);
* **answered during the delay**: from the server's own line for phase 2 of the
  shutdown (``installsure.drain``), also as req/s over the delay;
* the exit status, and what the server ended at the end of the grace (503s, aborted
  connections), from its last drain line.

The server logs JSON lines here (``INSTALLSURE_LOGGING_FORMAT=json``) so that those
lines are read by their fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import BenchError
from harness.children import Session
from harness.load import LoadClient, Measurement
from harness.servers import RunningServer, ServerSpec, start_server
from harness.tables import print_table, times

#: Seconds of load after the server exited, so the client sees the whole stop.
AFTER_EXIT = 2.0
#: How long the stop may take before the run counts as failed.
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class ShutdownFigures:
    """One SIGTERM under load."""

    dropped: int
    exit_seconds: float
    exit_code: int | None
    delay: float
    answered_in_delay: int | None
    requests_cut: int | None
    connections_aborted: int | None
    load: Measurement

    @property
    def delay_rps(self) -> float | None:
        if self.answered_in_delay is None or self.delay <= 0:
            return None
        return self.answered_in_delay / self.delay


def drain_events(log: Path) -> dict[str, dict[str, Any]]:
    """The server's drain lines, by phase ("2/4", "finished"), as their JSON fields."""
    found: dict[str, dict[str, Any]] = {}
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            message = str(event.get("message", ""))
            if message.startswith("shutdown 2/4"):
                found["2/4"] = event
            elif message.startswith("shutdown: work finished"):
                found["finished"] = event
    return found


def shutdown_spec(spec: ServerSpec, delay: float) -> ServerSpec:
    env = spec.env | {"INSTALLSURE_SHUTDOWN_DELAY": f"{delay:g}",
                      "INSTALLSURE_LOGGING_FORMAT": "json"}
    return replace(spec, env=env,
                   description=f"{spec.description}; shutdown.delay {delay:g} s")


def sigterm_under_load(
    server: RunningServer, client: LoadClient, *, after: float, delay: float
) -> ShutdownFigures:
    """Load ``server``, SIGTERM it after ``after`` seconds, wait for it to exit."""
    proc = server.proc
    assert proc is not None
    run = client.start(server.base_url + "/livez", after + delay + AFTER_EXIT + 2)
    time.sleep(after)
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    while proc.poll() is None:
        if time.monotonic() - signalled > STOP_TIMEOUT:
            raise BenchError(f"{server.spec.name} did not exit within {STOP_TIMEOUT:.0f} s "
                             f"of SIGTERM; see {server.workdir}")
        time.sleep(0.005)
    exit_seconds = time.monotonic() - signalled
    load = run.wait()
    events = drain_events((server.workdir or Path()) / server.spec.log_name)
    phase2, finished = events.get("2/4", {}), events.get("finished", {})
    return ShutdownFigures(
        dropped=load.dropped,
        exit_seconds=exit_seconds,
        exit_code=proc.returncode,
        delay=delay,
        answered_in_delay=phase2.get("served"),
        requests_cut=finished.get("requests_cut"),
        connections_aborted=finished.get("connections_aborted"),
        load=load,
    )


def describe(f: ShutdownFigures) -> str:
    served = "-" if f.answered_in_delay is None else str(f.answered_in_delay)
    rate = "" if f.delay_rps is None else f" ({f.delay_rps:.0f} req/s)"
    return (f"  dropped {f.dropped}  SIGTERM->exit {f.exit_seconds:.2f} s  exit {f.exit_code}"
            f"  answered during the {f.delay:g} s delay: {served}{rate}"
            f"  cut 503: {f.requests_cut}  aborted: {f.connections_aborted}"
            f"  ({f.load.client}: {f.load.requests} answered, {f.load.errors} errors)")


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def run_shutdown(
    specs: Sequence[ServerSpec],
    client: LoadClient,
    session: Session,
    server_cpus: set[int] | None,
    *,
    rounds: int,
    delay: float,
    after: float,
) -> int:
    """Every spec, ``rounds`` times, alternating; prints the figures; the exit status."""
    print(f"shutdown run: {client.kind}, {client.connections} connections on /livez, "
          f"SIGTERM after {after:g} s, shutdown.delay {delay:g} s, {rounds} round(s)")
    figures: dict[str, list[ShutdownFigures]] = {spec.name: [] for spec in specs}
    failures: list[str] = []
    for index in range(rounds):
        for spec in specs:
            print(f"round {index + 1}/{rounds}: {spec.name}", flush=True)
            try:
                server = start_server(shutdown_spec(spec, delay), session.children,
                                      session.workroot, server_cpus)
                try:
                    measured = sigterm_under_load(server, client, after=after, delay=delay)
                finally:
                    if server.proc is not None:
                        session.children.stop(server.proc)
            except BenchError as exc:
                failures.append(f"{spec.name}: {exc}")
                print(f"  FAILED: {exc}")
                continue
            figures[spec.name].append(measured)
            print(describe(measured), flush=True)
    print_summary(figures)
    if failures:
        print(f"\nsome runs FAILED: {'; '.join(failures)}")
        return 1
    return 0


def print_summary(figures: dict[str, list[ShutdownFigures]]) -> None:
    rows = []
    for name, runs in figures.items():
        if not runs:
            rows.append([name, "-", "-", "-", "-", "-", "-", "not measured"])
            continue
        dropped = sum(f.dropped for f in runs)
        exit_s = _median([f.exit_seconds for f in runs])
        served = _median([f.answered_in_delay for f in runs])
        rate = _median([f.delay_rps for f in runs])
        rows.append([
            name, str(dropped), f"{exit_s:.2f}" if exit_s is not None else "-",
            "-" if served is None else f"{served:.0f}",
            "-" if rate is None else f"{rate:.0f}",
            ",".join(str(f.exit_code) for f in runs),
            str(sum(f.requests_cut or 0 for f in runs)),
            "PASS" if dropped == 0 and all(f.exit_code == 0 for f in runs) else "MISS",
        ])
    print_table(["server", "dropped", "SIGTERM->exit s", "answered in delay",
                 "delay req/s", "exit", "cut 503", "0 dropped, exit 0"], rows, "lrrrrlrl")
    print("\ndropped: summed over the rounds (target 0); the other figures are medians.")
    if {"ours-fast", "ours-stock"} <= figures.keys():
        fast, stock = figures["ours-fast"], figures["ours-stock"]
        rate_f, rate_s = (_median([f.delay_rps for f in fast]),
                          _median([f.delay_rps for f in stock]))
        exit_f = _median([f.exit_seconds for f in fast])
        exit_s = _median([f.exit_seconds for f in stock])
        print_table(["ratio", "delay req/s", "SIGTERM->exit"], [[
            "ours-fast/ours-stock",
            times(rate_f / rate_s if rate_f and rate_s else None),
            times(exit_f / exit_s if exit_f and exit_s else None),
        ]], "lrr")
