"""Job runner benchmark: bulk-enqueue no-op jobs, drain them with one worker process.

    python bench/jobs.py [--jobs 100000] [--single-jobs 20000] [--concurrency 50]
                         [--rounds 1] [--peers]

Starts a private redis-server on a free port (never the shared one), enqueues
``--single-jobs`` jobs one ``enqueue`` call at a time with ``--concurrency`` calls in
flight, then ``--jobs`` no-op jobs with ``enqueue_bulk``, drains those with one
WorkerService in a child process and prints enqueue/s (single calls), bulk enqueue/s,
drain/s and p50/p99 wait (enqueue to start). With ``--peers`` the
same run is made with BullMQ (installed with npm into the benchmarks' cache folder on
first use) against the same Redis, alternating with ours, and the ratios are printed.
Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from harness import BenchError, run_cli
from harness.children import session
from harness.peers import npm_folder
from harness.private_redis import PrivateRedis
from harness.rounds import Figures, Rounds
from harness.tables import print_table, times

ROOT = Path(__file__).resolve().parents[1]
BULLMQ_REQUIREMENTS = ("bullmq@5",)
BULLMQ_SCRIPT = Path(__file__).with_name("jobs_bullmq.mjs")
#: What each round prints, as jobs_ours.py and jobs_bullmq.mjs name it.
PHASES = ("enqueue", "enqueue_bulk", "drain")
METRICS = (
    "enqueue_per_s", "enqueue_bulk_per_s", "drain_per_s", "wait_p50_ms", "wait_p99_ms",
    *(f"{phase}{side}_cpu_us" for phase in PHASES for side in ("", "_redis")),
)
#: The figures compared as ours / BullMQ, with the target of issue 11 for each.
RATIOS = {"enqueue_per_s": 1.5, "enqueue_bulk_per_s": 2.0, "drain_per_s": 2.0}


def bottleneck(result: dict[str, float], phase: str) -> float:
    """CPU µs per job of the busier of the two processes (client, redis-server) in a
    phase: what bounds the phase's rate when each has a core of its own."""
    return max(result[f"{phase}_cpu_us"], result[f"{phase}_redis_cpu_us"])


def last_json_line(out: subprocess.CompletedProcess[str], what: str) -> dict[str, float]:
    if out.returncode != 0:
        raise BenchError(f"{what} failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_ours(url: str, jobs: int, concurrency: int, single: int) -> dict[str, float]:
    """One round in a child process, so each round starts with a fresh reactor."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.jobs_ours", url, str(jobs), str(concurrency),
         str(single)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    return last_json_line(out, "our benchmark run")


def run_bullmq(
    directory: Path, port: int, jobs: int, concurrency: int, single: int
) -> dict[str, float]:
    env = dict(os.environ, NODE_PATH=str(directory / "node_modules"))
    script = directory / BULLMQ_SCRIPT.name
    shutil.copyfile(BULLMQ_SCRIPT, script)
    out = subprocess.run(
        ["node", str(script), str(port), str(jobs), str(concurrency), str(single)],
        cwd=directory, env=env, capture_output=True, text=True, check=False,
    )
    return last_json_line(out, "the BullMQ run")


def show(name: str, r: dict[str, float]) -> None:
    print(
        f"{name:8} enqueue {r['enqueue_per_s']:>8,.0f}/s  bulk {r['enqueue_bulk_per_s']:>8,.0f}/s"
        f"  drain {r['drain_per_s']:>8,.0f}/s  wait p50 {r['wait_p50_ms']:>7.1f} ms"
        f"  p99 {r['wait_p99_ms']:>7.1f} ms",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--single-jobs", type=int, default=20_000,
                        help="jobs enqueued one call at a time (default 20000)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peers", action="store_true", help="also run BullMQ and compare")
    args = parser.parse_args()
    contenders = ["ours"]
    bullmq_dir = None
    if args.peers:
        bullmq_dir, versions = npm_folder("bullmq", BULLMQ_REQUIREMENTS, ("bullmq",))
        print(f"BullMQ: {versions}")
        contenders.append("bullmq")
    figures: Figures[float] = Figures(args.rounds)
    by_round: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    with session("installsure-bench-jobs-") as current:
        redis = PrivateRedis(current.children, current.workroot)
        for index, name in Rounds(contenders, args.rounds):
            redis.flush()
            if bullmq_dir is not None and name == "bullmq":
                result = run_bullmq(bullmq_dir, redis.port, args.jobs, args.concurrency,
                                    args.single_jobs)
            else:
                result = run_ours(redis.url, args.jobs, args.concurrency, args.single_jobs)
            show(name, result)
            by_round[name].append(result)
            for key in METRICS:
                figures.record(name, key, index, result[key])
        redis.stop()
        current.keep = False

    print(f"\n{args.single_jobs:,} single and {args.jobs:,} bulk jobs, concurrency "
          f"{args.concurrency}, {args.rounds} round(s), medians:")
    for name in contenders:
        show(name, {key: figures.median(name, key, float) or 0.0 for key in METRICS})
    if args.peers:
        rows = []
        for key, target in RATIOS.items():
            ratio = figures.ratio("ours", "bullmq", key, float)
            if ratio is not None:
                verdict = "PASS" if ratio.of_medians >= target else "MISS"
                rows.append([key, "ours/bullmq", times(ratio.of_medians), f">= {target}x",
                             verdict, ratio.by_round_text()])
        print_table(["figure", "ratio", "of medians", "target", "verdict",
                     "rounds' ratios: median (range)"], rows, "llrlll")
        print("\nCPU µs per job (client / redis-server), medians, and the ratio of the busier")
        print("side's, BullMQ's over ours: the rate each would reach with a core of its own")
        cpu_rows = []
        for phase in PHASES:
            cells = []
            for name in contenders:
                client = figures.median(name, f"{phase}_cpu_us", float) or 0.0
                server = figures.median(name, f"{phase}_redis_cpu_us", float) or 0.0
                cells.append(f"{client:.1f} / {server:.1f}")
            per_round = [
                bottleneck(theirs, phase) / bottleneck(ours, phase)
                for ours, theirs in zip(by_round["ours"], by_round["bullmq"], strict=True)
                if bottleneck(ours, phase) > 0
            ]
            cpu_rows.append([phase, *cells,
                             times(statistics.median(per_round)) if per_round else "-"])
        print_table(["phase", "ours", "bullmq", "by CPU: ours/bullmq (median of rounds)"],
                    cpu_rows, "llll")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
