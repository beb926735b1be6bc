"""WAMP benchmark: one publisher to many subscribers, and memory per idle session.

    python bench/wamp.py [--peers] [--rounds 3] [--duration 10] [--subscribers 100]
                         [--rate 5000] [--idle 1000,5000] [--json FILE]

Starts our server as operators do (``twistd -n installsure``, embedded Redis, anonymous
sessions allowed for the benchmark's topic), and measures over real sockets, with the
load client ``bench/wamp_load.mjs`` (raw WebSocket clients speaking wamp.2.json, in one
Node process on the other CPU):

* fan-out at a fixed rate (``--rate`` deliveries/s: 1 publisher, ``--subscribers``
  subscribers): deliveries/s and publish-to-deliver p50/p99;
* fan-out saturated (as fast as the router takes it, at most ~200 publications in
  flight): deliveries/s and latencies;
* memory per idle session: the server's resident memory (its whole process group)
  before and after opening ``--idle`` sessions that each hold one subscription.

With ``--peers`` the same load runs against Crossbar (pip-installed into the benchmarks'
cache folder on first use; one router worker, an anonymous realm), alternating with ours
in each round, and the ratios are printed. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import BenchError, run_cli
from harness.children import choose_cpus, free_port, session
from harness.peers import npm_folder, pip_venv
from harness.rounds import Figures, Rounds
from harness.tables import print_table

ROOT = Path(__file__).resolve().parents[1]
LOAD_SCRIPT = Path(__file__).with_name("wamp_load.mjs")
TWISTD = Path(sys.executable).parent / "twistd"
STARTUP_TIMEOUT = 90.0

#: (key, label, higher is better)
FIGURES = (
    ("fixed_rate_dps", "fixed rate: deliveries/s", True),
    ("fixed_p50_ms", "fixed rate: p50 ms", False),
    ("fixed_p99_ms", "fixed rate: p99 ms", False),
    ("saturated_dps", "saturated: deliveries/s", True),
    ("saturated_p50_ms", "saturated: p50 ms", False),
    ("saturated_p99_ms", "saturated: p99 ms", False),
)


def ours_command(port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTALLSURE_")}
    env.update({
        "PYTHONPATH": str(ROOT),
        "INSTALLSURE_REALTIME_ALLOW_ANONYMOUS": "true",
        "INSTALLSURE_REALTIME_RULES": "anonymous subscribe|publish bench. prefix allow",
        "INSTALLSURE_REALTIME_MAX_CONNECTIONS": "0",
        "INSTALLSURE_LOGGING_LEVEL": "warn",
    })
    argv = [str(TWISTD), "--pidfile=", "-n", "installsure", "--data-dir",
            str(workdir / "data"), "--listen", f"tcp:{port}:interface=127.0.0.1"]
    return argv, env


def crossbar_command(python: Path, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
    cbdir = workdir / ".crossbar"
    cbdir.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 2,
        "controller": {},
        "workers": [{
            "type": "router",
            "realms": [{
                "name": "installsure",
                "roles": [{
                    "name": "anonymous",
                    "permissions": [{
                        "uri": "", "match": "prefix",
                        "allow": {"call": True, "register": True, "publish": True,
                                  "subscribe": True},
                        "disclose": {"caller": False, "publisher": False},
                        "cache": True,
                    }],
                }],
            }],
            "transports": [{
                "type": "websocket",
                "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1"},
                "serializers": ["json"],
            }],
        }],
    }
    (cbdir / "config.json").write_text(json.dumps(config, indent=2))
    crossbar = python.parent / "crossbar"
    return ([str(crossbar), "start", "--cbdir", str(cbdir), "--loglevel", "warn"],
            dict(os.environ))


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the server exited with {proc.returncode}:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listened on port {port} within {STARTUP_TIMEOUT:.0f} s")


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in group ``pgid``."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            stat = (status.parent / "stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


class Load:
    def __init__(self, folder: Path, cpus: set[int] | None) -> None:
        self.folder = folder
        self.cpus = cpus
        self.env = dict(os.environ)
        # ES modules resolve packages from their own folder (NODE_PATH does not apply).
        self.script = folder / LOAD_SCRIPT.name
        shutil.copyfile(LOAD_SCRIPT, self.script)

    def _preexec(self) -> None:
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def fanout(self, url: str, subscribers: int, rate: int, seconds: float) -> dict[str, Any]:
        out = subprocess.run(
            ["node", str(self.script), "fanout", url, str(subscribers), str(rate),
             str(seconds)], env=self.env, capture_output=True, text=True,
            timeout=seconds + 120, check=False, preexec_fn=self._preexec,
        )
        lines = out.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]}
        if "error" in result:
            raise BenchError(f"the load client failed: {result['error']}")
        return dict(result)

    def idle_memory(self, url: str, sessions: int, pgid: int) -> float:
        """Bytes of the server's memory per idle session."""
        time.sleep(1.0)
        before = group_rss_bytes(pgid)
        proc = subprocess.Popen(
            ["node", str(self.script), "idle", url, str(sessions)], env=self.env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=self._preexec,  # noqa: PLW1509 - no threads here
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            ready = json.loads(line) if line else {"error": "no answer"}
            if "ready" not in ready:
                raise BenchError(f"idle sessions failed: {ready}")
            time.sleep(2.0)  # let the server settle (and the allocator keep what it took)
            after = group_rss_bytes(pgid)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(60)
        return (after - before) / sessions


def run_contender(name: str, spec: Any, args: argparse.Namespace, *, load: Load,
                  server_cpus: set[int] | None, bench: Any, index: int,
                  figures: Figures[float]) -> None:
    port = free_port()
    workdir = bench.workroot / f"{name}-{index}"
    workdir.mkdir(parents=True)
    argv, env = spec(port, workdir)
    log = workdir / "console.log"
    proc = bench.children.spawn(argv, cwd=workdir, env=env, output=log, cpus=server_cpus)
    try:
        wait_listening(port, proc, log)
        time.sleep(3.0)  # the broker's backplane and the router worker settle
        url = f"ws://127.0.0.1:{port}/ws"
        fixed = load.fanout(url, args.subscribers, args.rate, args.duration)
        saturated = load.fanout(url, args.subscribers, 0, args.duration)
        for prefix, result in (("fixed", fixed), ("saturated", saturated)):
            key = "fixed_rate_dps" if prefix == "fixed" else "saturated_dps"
            figures.record(name, key, index, result["deliveriesPerSecond"])
            figures.record(name, f"{prefix}_p50_ms", index, result["p50"])
            figures.record(name, f"{prefix}_p99_ms", index, result["p99"])
        print(f"  {name}: fixed {fixed['deliveriesPerSecond']:,.0f}/s p50 {fixed['p50']:.2f} "
              f"p99 {fixed['p99']:.2f} ms; saturated {saturated['deliveriesPerSecond']:,.0f}/s "
              f"p99 {saturated['p99']:.2f} ms", flush=True)
        for sessions in args.idle:
            per = load.idle_memory(url, sessions, proc.pid)
            figures.record(name, f"idle_{sessions}_kib", index, per / 1024)
            print(f"  {name}: {per / 1024:.1f} KiB per idle session at {sessions}", flush=True)
    finally:
        bench.children.stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", action="store_true", help="also run Crossbar and compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=int, default=5000, help="deliveries/s of the fixed run")
    parser.add_argument("--idle", default="1000,5000",
                        help="idle session counts to measure memory at (comma-separated)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    args.idle = [int(n) for n in args.idle.split(",") if n]

    folder, load_versions = npm_folder("wamp-load", ["ws@8"], ["ws"])
    contenders: dict[str, Any] = {"ours": ours_command}
    versions = {"load client": load_versions}
    if args.peers:
        python, crossbar_versions = pip_venv("crossbar", ["crossbar"],
                                             ["crossbar", "autobahn", "twisted"])
        contenders["crossbar"] = lambda port, workdir: crossbar_command(python, port, workdir)
        versions["crossbar"] = crossbar_versions
    for what, text in versions.items():
        print(f"{what}: {text}")
    server_cpus, load_cpus = choose_cpus(None)
    print(f"server on CPUs {sorted(server_cpus or [])}, load on {sorted(load_cpus or [])}")
    load = Load(folder, load_cpus)
    rounds = Rounds(list(contenders), args.rounds)
    figures: Figures[float] = Figures(args.rounds)
    with session("installsure-bench-wamp-") as bench:
        for index, name in rounds:
            print(rounds.label(index, name), flush=True)
            run_contender(name, contenders[name], args, load=load, server_cpus=server_cpus,
                          bench=bench, index=index, figures=figures)
        bench.keep = False
    report(list(contenders), figures, args)
    return 0


def report(names: list[str], figures: Figures[float], args: argparse.Namespace) -> None:
    keys = [(k, label, better) for k, label, better in FIGURES]
    keys += [(f"idle_{n}_kib", f"KiB per idle session at {n}", False) for n in args.idle]
    header = ["figure (median of rounds)", *names]
    if "crossbar" in names:
        header.append("ours / crossbar")
    rows = []
    out: dict[str, Any] = {}
    for key, label, _better in keys:
        row = [label]
        medians = {}
        for name in names:
            values = figures.measured(name, key)
            medians[name] = statistics.median(values) if values else None
            row.append("-" if medians[name] is None else f"{medians[name]:,.2f}")
            out.setdefault(name, {})[key] = figures.series(name, key)
        if "crossbar" in names:
            a, b = medians.get("ours"), medians.get("crossbar")
            row.append(f"{a / b:.2f}x" if a and b else "-")
        rows.append(row)
    print()
    print_table(header, rows, "l" + "r" * (len(header) - 1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_cli(main))
