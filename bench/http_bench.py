"""HTTP benchmark: our server, on both wires, against bare FastAPI+uvicorn and Fastify peers.

    python bench/http_bench.py [--duration 10] [--connections 50] [--threads 1] [--rounds 3]
                               [--wire fast,stock] [--peers] [--url-of-running-server URL]
                               [--no-project-route] [--json FILE]
    python bench/http_bench.py --shutdown [--shutdown-delay 2] [--shutdown-after 3]
                               [--wire fast,stock] [--rounds 3] [--connections 50]

Starts ``twistd -n installsure`` as users do (temp data dir, loopback port, logs to a
file), once per HTTP wire (``http.wire = "fast"`` and ``"stock"``, through
INSTALLSURE_HTTP_WIRE), loads ``/livez``, a small JSON route and an authenticated
``GET /api/projects/{id}`` (on a SQLite file made for the run) with ``wrk`` (or a
fallback asyncio client when wrk is missing), and prints req/s, p50 and p99. With
``--peers`` it also installs (once, cached under ~/.cache/installsure-bench/) and runs a
bare FastAPI and a bare Fastify app, one server at a time, alternating round by round,
and prints the ratios fast/stock and ours/peer, the latter against the targets of the
foundation and domain issues. With ``--shutdown`` it runs the shutdown run instead
(``harness/shutdown.py``): full load, SIGTERM, then requests dropped (target 0), time from
SIGTERM to exit and requests answered during ``shutdown.delay``. See bench/README.rst.

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness import BenchError, run_cli
from harness.authroute import PROJECT_ROUTE, AuthFixture, check_answers, prepare
from harness.children import Session, choose_cpus, session
from harness.load import LoadClient, Measurement, choose_load_client
from harness.peers import npm_folder, pip_venv
from harness.rounds import Figures, Ratio, Rounds
from harness.servers import (
    ServerExitedError,
    ServerSpec,
    check_loopback_url,
    http_get,
    running,
)
from harness.shutdown import run_shutdown
from harness.tables import print_table, times

# --- what is measured -------------------------------------------------------------------

#: The liveness route, served by every server; the targets below are about this one.
LIVENESS_ROUTE = "/livez"
#: Candidates for "a small JSON GET route", first one that answers 200 JSON wins.
#: ``/api/health`` is deliberately absent: it checks Redis and the database.
SMALL_JSON_ROUTES = ("/info", "/live")

#: Targets from the foundation issue, for /livez: ours / peer >= factor.
TARGETS = {"fastapi": 2.0, "fastify": 0.3}
#: Targets of the domain issue for the authenticated project read: ours / FastAPI's
#: route doing the same work >= 2, and ours' p99 at most this at 50 connections.
PROJECT_TARGETS = {"fastapi": 2.0}
PROJECT_P99_MS = 25.0

#: Our server's HTTP wires (setting ``http.wire``) and the variable that chooses one.
WIRES = ("fast", "stock")
WIRE_ENV = "INSTALLSURE_HTTP_WIRE"

#: What the FastAPI peer installs: FastAPI with uvicorn as its docs recommend
#: (``uvicorn[standard]`` brings uvloop and httptools, which uvicorn then picks itself).
FASTAPI_REQUIREMENTS = ("fastapi>=0.115,<1", "uvicorn[standard]>=0.30,<1",
                        # its authenticated project route: the ORM and the JWT library
                        # its documentation uses
                        "SQLAlchemy>=2,<3", "PyJWT>=2.8,<3")
#: What the Fastify peer installs.
FASTIFY_REQUIREMENTS = ("fastify@^5",)

REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "_peers"

#: Environment variables our server reads as configuration. They are removed from its
#: environment so the benchmark measures the defaults whatever the shell exported (and
#: never points the server at a shared Redis or database).
OUR_CONFIG_ENV = (
    "PORT", "HOST", "REDIS_URL", "JWT_SECRET", "API_SECRET", "NODE_ENV",
    "ENABLE_REAL_TIME_SYNC", "ENABLE_FILE_PROCESSING", "ENABLE_EMAIL_NOTIFICATIONS",
)

#: Below this CPU share a server was held back by something other than itself.
STARVED_CPU_PERCENT = 85.0


# --- servers ----------------------------------------------------------------------------


def our_server_specs(args: argparse.Namespace, auth: AuthFixture | None) -> list[ServerSpec]:
    """One contender per wire (``ours-fast``, ``ours-stock``), or the running server.

    With the project route (``auth``), the server gets the shared SQLite file, the key
    the token is signed with (``JWT_SECRET``) and a per-user rate limit out of reach."""
    if args.url_of_running_server:
        return [ServerSpec(
            name="ours",
            description=f"already running at {args.url_of_running_server}",
            url=args.url_of_running_server.rstrip("/"),
        )]
    twistd = Path(sys.executable).parent / "twistd"
    if not twistd.exists():
        raise BenchError(
            f"{twistd} not found: install Twisted into the venv that runs this benchmark "
            "(see README.rst, Development), or measure a running server with "
            "--url-of-running-server."
        )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("INSTALLSURE_") and k not in OUR_CONFIG_ENV
    }
    # The checkout under test wins over any installed copy; twistd finds the plugin in
    # <repo>/twisted/plugins through the same path.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    extra: list[str] = []
    if auth is not None:
        extra = ["--database-url", f"sqlite:///{auth.database}"]
        env["JWT_SECRET"] = auth.secret
        # One user's 50 connections would spend the default 300 requests a minute in
        # a tenth of a second: the limit stays on (its Redis check is part of the work
        # measured) but out of reach, per user and per address (both counted in one
        # Redis call). FastAPI's route has no limit at all.
        env["INSTALLSURE_HTTP_RATE_LIMIT_DEFAULT"] = "1000000000/60"
        env["INSTALLSURE_HTTP_RATE_LIMITS_ADDRESS"] = "1000000000/60"
    argv = [
        str(twistd), "-n",
        "--logfile", "{workdir}/twistd.log",
        "--pidfile", "{workdir}/twistd.pid",
        "installsure",
        "--listen", "tcp:{port}:interface=127.0.0.1",
        "--data-dir", "{workdir}/data",
        *extra,
        *args.server_arg,
    ]
    return [
        ServerSpec(
            name=f"ours-{wire}",
            description=f"twistd -n installsure, {WIRE_ENV}={wire} (defaults otherwise: "
            "embedded Redis, SQLite, access log on)",
            argv=argv,
            env=env | {WIRE_ENV: wire},
            log_name="twistd.log",
        )
        for wire in args.wire
    ]


def wire_refusal(spec: ServerSpec, exc: ServerExitedError) -> str | None:
    """What the server said about INSTALLSURE_HTTP_WIRE when it refused to start, if it did.

    A checkout from before the ``http.wire`` setting refuses the unknown variable.
    """
    if WIRE_ENV not in spec.env:
        return None
    said = [line.strip().removeprefix("- ") for line in exc.output.splitlines()
            if WIRE_ENV in line]
    if not said:
        return None
    return f"our server refused to start with {WIRE_ENV}={spec.env[WIRE_ENV]}: " + "; ".join(said)


def without_wire(spec: ServerSpec) -> ServerSpec:
    """The fast contender on a server that has no wire setting: its one wire is the fast one."""
    env = {k: v for k, v in spec.env.items() if k != WIRE_ENV}
    return replace(spec, env=env, description=spec.description.replace(
        f"{WIRE_ENV}=fast", f"no {WIRE_ENV} (this checkout has one wire, the fast one)"))


def fastapi_spec(python: Path, versions: str, *, access_log: bool,
                 auth: AuthFixture | None) -> ServerSpec:
    argv = [
        str(python), "-m", "uvicorn", "fastapi_app:app",
        "--host", "127.0.0.1", "--port", "{port}",
    ]
    if not access_log:
        argv.append("--no-access-log")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Keep bench/_peers/ free of __pycache__ folders.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if auth is not None:
        env["BENCH_DATABASE"] = str(auth.database)
        env["BENCH_JWT_SECRET"] = auth.secret
    return ServerSpec(
        name="fastapi",
        description=(
            f"uvicorn fastapi_app:app, 1 worker, access log {'on' if access_log else 'off'}"
            f" ({versions})"
        ),
        argv=argv,
        cwd=PEERS_DIR,
        env=env,
        log_name="uvicorn.log",
    )


def fastify_spec(app_dir: Path, versions: str) -> ServerSpec:
    env = dict(os.environ)
    env["PORT"] = "{port}"
    env["NODE_ENV"] = "production"
    return ServerSpec(
        name="fastify",
        description=f"node fastify_app.js, logger off ({versions})",
        argv=["node", "fastify_app.js"],
        cwd=app_dir,
        env=env,
        log_name="node.log",
        skip_routes=(PROJECT_ROUTE,),
    )


def peer_specs(args: argparse.Namespace, auth: AuthFixture | None) -> list[ServerSpec]:
    def fastapi() -> ServerSpec:
        python, versions = pip_venv("fastapi", FASTAPI_REQUIREMENTS,
                                    ("fastapi", "uvicorn", "uvloop", "httptools",
                                     "SQLAlchemy", "PyJWT"))
        return fastapi_spec(python, versions, access_log=args.fastapi_access_log, auth=auth)

    def fastify() -> ServerSpec:
        folder, versions = npm_folder("fastify", FASTIFY_REQUIREMENTS, ("fastify",))
        # Copied every run, so edits to bench/_peers/ take effect; require() resolves
        # next to the script, where node_modules is.
        shutil.copy2(PEERS_DIR / "fastify_app.js", folder / "fastify_app.js")
        return fastify_spec(folder, versions)

    specs = []
    for name, make in (("fastapi", fastapi), ("fastify", fastify)):
        try:
            specs.append(make())
        except BenchError as exc:
            print(f"SKIPPING the {name} peer: {exc}")
    return specs


def pick_small_json_route(base_url: str) -> str:
    for route in SMALL_JSON_ROUTES:
        try:
            status, ctype, body = http_get(base_url + route)
        except OSError:
            continue
        if status == 200 and "json" in ctype:
            with contextlib.suppress(ValueError):
                json.loads(body)
                return route
    raise BenchError(
        f"none of the small JSON routes {', '.join(SMALL_JSON_ROUTES)} answered 200 JSON at "
        f"{base_url}; edit SMALL_JSON_ROUTES at the top of bench/http_bench.py."
    )


# --- the rounds -------------------------------------------------------------------------


@dataclass
class Run:
    """One benchmark run: its settings, its contenders, and what they gave."""

    args: argparse.Namespace
    specs: dict[str, ServerSpec]
    client: LoadClient
    session: Session
    server_cpus: set[int] | None
    figures: Figures[Measurement]
    routes: list[str]
    failures: dict[str, list[str]]
    #: the authenticated project read, when measured
    auth: AuthFixture | None = None
    small_route_chosen: bool = False

    def request_of(self, route: str) -> tuple[str, dict[str, str]]:
        """(URL path, headers) of a route as the tables name it."""
        if self.auth is not None and route == PROJECT_ROUTE:
            return self.auth.path, self.auth.headers
        return route, {}

    @property
    def ours(self) -> list[str]:
        return [name for name in self.specs if name.startswith("ours")]

    @property
    def peers(self) -> list[str]:
        return [name for name in self.specs if not name.startswith("ours")]

    def measure(self, index: int, name: str) -> None:
        """Start ``name`` fresh, load each route once, stop it."""
        with running(self.specs[name], self.session.children, self.session.workroot,
                     self.server_cpus) as server:
            if not self.small_route_chosen:
                # Ours decides the route (peers serve the same paths).
                self.routes.insert(1, pick_small_json_route(server.base_url))
                self.small_route_chosen = True
                print(f"  small JSON route: {self.routes[1]} "
                      f"(first of {', '.join(SMALL_JSON_ROUTES)} that answers)")
            for route in self.routes:
                if route in self.specs[name].skip_routes:
                    continue
                path, headers = self.request_of(route)
                if headers:
                    check_answers(server, path, headers)
                m = self.client.measure(server.base_url + path, duration=self.args.duration,
                                        warmup=self.args.warmup, server_pgid=server.pgid,
                                        headers=headers)
                self.figures.record(name, route, index, m)
                note = f", {m.errors} ERRORS" if m.errors else ""
                if m.cpu_percent is not None:
                    note += f"  server CPU {m.cpu_percent:.0f} %"
                if m.client_cpu_percent is not None:
                    note += f", {m.client} CPU {m.client_cpu_percent:.0f} %"
                print(f"  {route:<18} {m.rps:>9.0f} req/s  p50 {m.p50_ms:.2f} ms  "
                      f"p99 {m.p99_ms:.2f} ms{note}", flush=True)


def measure_all(run: Run) -> int:
    args = run.args
    print(f"load: {run.client.kind}, {args.connections} connections, {args.threads} "
          f"thread(s), {args.duration:g} s per route after {args.warmup:g} s warm-up, "
          f"{args.rounds} round(s)")
    if run.server_cpus:
        print(f"pinning: servers we start on CPU {sorted(run.server_cpus)}, load generator "
              f"on CPU {sorted(run.client.cpus or ())}")
    else:
        print("pinning: off")
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        print(f"note: load average is {load1:.2f} before we start; other work on this "
              "machine will show in the figures (compare ratios, not absolutes)")
    for spec in run.specs.values():
        print(f"  {spec.name:<10} {spec.description}")

    rounds = Rounds(list(run.specs), args.rounds)
    for index, name in rounds:
        print(rounds.label(index, name), flush=True)
        try:
            try:
                run.measure(index, name)
            except ServerExitedError as exc:
                refusal = wire_refusal(run.specs[name], exc)
                if refusal is None:
                    raise
                if name != "ours-fast":
                    rounds.skip(name, refusal)
                    continue
                print(f"  {refusal}\n  so ours-fast is measured without {WIRE_ENV}, on the "
                      "server's default wire (the fast one where the setting does not exist)")
                run.specs[name] = without_wire(run.specs[name])
                run.measure(index, name)
        except BenchError as exc:
            if index == 0 and name == run.ours[0]:
                # Nothing to compare against: stop here, with the reason.
                raise
            run.failures.setdefault(name, []).append(str(exc))
            print(f"  FAILED: {exc}")

    print_medians(run, rounds.skipped)
    rows = ratio_rows(run)
    print_ratios(rows)
    latency = latency_verdicts(run)
    for line in latency:
        print(line)
    if args.json:
        write_json(run, rows, rounds.skipped)
        print(f"\nfigures written to {args.json}")
    if run.failures:
        print(f"\nsome runs FAILED ({', '.join(run.failures)}): see the messages above")
        return 1
    return 0


# --- reporting --------------------------------------------------------------------------


def medians(figures: Figures[Measurement], name: str, route: str) -> dict[str, float] | None:
    measured = figures.measured(name, route)
    if not measured:
        return None
    out = {"errors": float(sum(m.errors for m in measured))}
    for key, figure in (
        ("rps", lambda m: m.rps), ("p50_ms", lambda m: m.p50_ms),
        ("p99_ms", lambda m: m.p99_ms), ("cpu_percent", lambda m: m.cpu_percent),
        ("per_cpu_s", lambda m: m.per_cpu_s),
        ("client_cpu_percent", lambda m: m.client_cpu_percent),
    ):
        value = figures.median(name, route, figure)
        if value is not None:
            out[key] = value
    return out


def print_medians(run: Run, skipped: dict[str, str]) -> None:
    rows = []
    for name in run.specs:
        if name in skipped:
            continue
        for route in run.routes:
            if route in run.specs[name].skip_routes:
                continue
            med = medians(run.figures, name, route)
            if med is None:
                rows.append([name, route, "-", "-", "-", "-", "-", "-", "not measured"])
                continue
            each = " ".join("-" if m is None else f"{m.rps:.0f}"
                            for m in run.figures.series(name, route))
            rows.append([
                name, route, f"{med['rps']:.0f}", f"{med['p50_ms']:.2f}",
                f"{med['p99_ms']:.2f}", f"{med['errors']:.0f}",
                f"{med['cpu_percent']:.0f} %" if "cpu_percent" in med else "-",
                f"{med['per_cpu_s']:.0f}" if "per_cpu_s" in med else "-",
                each,
            ])
    print_table(["server", "route", "req/s", "p50 ms", "p99 ms", "errors", "srv CPU",
                 "req/CPU-s", "req/s of each round"], rows, "llrrrrrrl")
    for name, reason in skipped.items():
        print(f"{name}: not measured: {reason}")
    print(
        "\nsrv CPU: CPU time of the server's processes / wall time (100 % = one core);"
        "\nreq/CPU-s: requests per CPU second of the server, little moved by other load."
    )
    for name in run.specs:
        for route in run.routes:
            med = medians(run.figures, name, route)
            if med is None or med.get("cpu_percent", 100) >= STARVED_CPU_PERCENT:
                continue
            why = "lost CPU to other work on the machine"
            if med.get("client_cpu_percent", 0) >= 80 * run.args.threads:
                why = (
                    "the load generator was the limit "
                    f"(its CPU: {med['client_cpu_percent']:.0f} %)"
                )
            print(
                f"note: {name} {route} kept its core only {med['cpu_percent']:.0f} % busy: "
                f"{why}; its req/s is understated, its req/CPU-s is the better figure."
            )


@dataclass(frozen=True)
class RatioRow:
    route: str
    top: str
    bottom: str
    rps: Ratio
    per_cpu_s: Ratio | None
    #: ours / peer at least this on /livez (the foundation issue's targets)
    target: float | None

    @property
    def verdict(self) -> str | None:
        if self.target is None:
            return None
        return "PASS" if self.rps.of_medians >= self.target else "MISS"


def ratio_rows(run: Run) -> list[RatioRow]:
    """ours/peer for every wire and peer, then fast/stock, route by route."""
    pairs = [(ours, peer) for peer in run.peers for ours in run.ours]
    if {"ours-fast", "ours-stock"} <= set(run.specs):
        pairs.append(("ours-fast", "ours-stock"))
    rows = []
    for route in run.routes:
        for top, bottom in pairs:
            rps = run.figures.ratio(top, bottom, route, lambda m: m.rps)
            if rps is None:
                continue
            target = (TARGETS.get(bottom) if route == LIVENESS_ROUTE
                      else PROJECT_TARGETS.get(bottom) if route == PROJECT_ROUTE else None)
            rows.append(RatioRow(
                route, top, bottom, rps,
                run.figures.ratio(top, bottom, route, lambda m: m.per_cpu_s), target,
            ))
    return rows


def print_ratios(rows: Sequence[RatioRow]) -> None:
    if not rows:
        return
    print_table(
        ["route", "ratio", "req/s", "target", "verdict", "req/CPU-s",
         "rounds' req/s ratios: median (range)"],
        [[row.route, f"{row.top}/{row.bottom}", times(row.rps.of_medians),
          "-" if row.target is None else f">= {row.target}x", row.verdict or "-",
          times(row.per_cpu_s.of_medians if row.per_cpu_s else None),
          row.rps.by_round_text()] for row in rows],
        "llrllrl",
    )


def latency_verdicts(run: Run) -> list[str]:
    """Our p99 on the project route against its target, wire by wire."""
    if run.auth is None:
        return []
    lines = []
    for name in run.ours:
        p99 = run.figures.median(name, PROJECT_ROUTE, lambda m: m.p99_ms)
        if p99 is None:
            continue
        verdict = "PASS" if p99 <= PROJECT_P99_MS else "MISS"
        lines.append(f"{PROJECT_ROUTE} {name}: median p99 {p99:.2f} ms at "
                     f"{run.args.connections} connections (target <= {PROJECT_P99_MS:g} ms): "
                     f"{verdict}")
    return lines


def write_json(run: Run, rows: Sequence[RatioRow], skipped: dict[str, str]) -> None:
    args = run.args
    p99_targets = {
        name: {"p99_ms": p99, "target_ms": PROJECT_P99_MS,
               "verdict": "PASS" if p99 <= PROJECT_P99_MS else "MISS"}
        for name in run.ours
        if run.auth is not None
        and (p99 := run.figures.median(name, PROJECT_ROUTE, lambda m: m.p99_ms)) is not None
    }

    def measurement(m: Measurement | None) -> dict[str, Any] | None:
        return None if m is None else asdict(m) | {"rps": m.rps, "per_cpu_s": m.per_cpu_s}

    doc = {
        "settings": {
            "duration_s": args.duration, "warmup_s": args.warmup,
            "connections": args.connections, "threads": args.threads,
            "rounds": args.rounds, "load_client": run.client.kind,
            "pinned": run.client.cpus is not None,
        },
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "routes": list(run.routes),
        "servers": {
            name: {
                "description": spec.description,
                "median": {r: medians(run.figures, name, r) for r in run.routes},
                "rounds": {r: [measurement(m) for m in run.figures.series(name, r)]
                           for r in run.routes},
                "failures": run.failures.get(name, []),
                "skipped": skipped.get(name),
            }
            for name, spec in run.specs.items()
        },
        "ratios": [
            {"route": row.route, "of": row.top, "over": row.bottom,
             "ratio": row.rps.of_medians, "round_ratios": list(row.rps.by_round),
             "ratio_per_cpu_s": row.per_cpu_s.of_medians if row.per_cpu_s else None,
             "target": row.target, "verdict": row.verdict}
            for row in rows
        ],
        "project_route_p99": p99_targets,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")


# --- command line -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/http_bench.py",
        description="Load /livez and a small JSON route of our server on each HTTP wire "
        "(and, with --peers, of bare FastAPI and Fastify apps) and print req/s, p50, p99 "
        "and ratios.",
    )
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of measured load per route and round (1-300, default 10)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds of unmeasured load before each measurement "
                   "(0-60, default: min(3, duration))")
    p.add_argument("--connections", type=int, default=50,
                   help="concurrent keep-alive connections (1-2000, default 50)")
    p.add_argument("--threads", type=int, default=1,
                   help="wrk threads (default 1: the load generator gets one core)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; each round starts each server once (1-20, default 3)")
    p.add_argument("--wire", default=None, metavar="fast,stock",
                   help="our server's HTTP wires to measure, each a contender of its own "
                   "(http.wire through INSTALLSURE_HTTP_WIRE; default: both)")
    p.add_argument("--peers", action="store_true",
                   help="also run bare FastAPI+uvicorn and Fastify apps, alternating")
    p.add_argument("--url-of-running-server", metavar="URL",
                   help="measure this already running server instead of starting twistd "
                   "(loopback addresses only)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for `twistd -n installsure` (repeatable), e.g. "
                   "--server-arg=--config=my.toml")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the figures here")
    p.add_argument("--load-client", choices=("auto", "wrk", "python"), default="auto",
                   help="wrk when found (default), else the built-in asyncio client")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None,
                   help="pin each server to one CPU and the load generator to the others "
                   "(default: on when there are at least 2 CPUs; see bench/README.rst)")
    p.add_argument("--project-route", action=argparse.BooleanOptionalAction, default=True,
                   help=f"also load the authenticated {PROJECT_ROUTE} (token verification, "
                   "revocation check, membership, one row) on a shared SQLite file "
                   "(default on)")
    p.add_argument("--fastapi-access-log", action=argparse.BooleanOptionalAction,
                   default=True, help="uvicorn's access log (default on, as uvicorn ships)")
    p.add_argument("--shutdown", action="store_true",
                   help="instead of the throughput rounds: SIGTERM each of our wires under "
                   "full load and print requests dropped, SIGTERM-to-exit time and "
                   "requests answered during the delay")
    p.add_argument("--shutdown-delay", type=float, default=2.0, metavar="SECONDS",
                   help="shutdown.delay of the server in --shutdown runs (0-20, default 2)")
    p.add_argument("--shutdown-after", type=float, default=3.0, metavar="SECONDS",
                   help="seconds of load before SIGTERM in --shutdown runs (1-60, default 3)")
    args = p.parse_args(argv)

    problems = []
    if not 1 <= args.duration <= 300:
        problems.append("--duration must be between 1 and 300 seconds")
    if args.warmup is None:
        args.warmup = min(3.0, args.duration)
    if not 0 <= args.warmup <= 60:
        problems.append("--warmup must be between 0 and 60 seconds")
    if not 1 <= args.connections <= 2000:
        problems.append("--connections must be between 1 and 2000")
    if not 1 <= args.threads <= max(1, os.cpu_count() or 1) * 4:
        problems.append("--threads must be between 1 and 4x the number of CPUs")
    if args.threads > args.connections:
        problems.append("--threads cannot exceed --connections (wrk needs one per thread)")
    if not 1 <= args.rounds <= 20:
        problems.append("--rounds must be between 1 and 20")
    if args.url_of_running_server:
        problem = check_loopback_url(args.url_of_running_server, "--url-of-running-server")
        if problem:
            problems.append(problem)
        if args.wire is not None:
            problems.append("--wire chooses the wire of servers we start; a running server "
                            "keeps its own (drop --wire or --url-of-running-server)")
        # Its database and token are made here, for servers we start.
        args.project_route = False
    wires = [w.strip() for w in (args.wire or ",".join(WIRES)).split(",") if w.strip()]
    unknown = [w for w in wires if w not in WIRES]
    if unknown or not wires or len(set(wires)) != len(wires):
        problems.append(f"--wire takes {' and/or '.join(WIRES)}, comma-separated, each once "
                        f"(not {args.wire!r})")
    args.wire = wires
    if args.shutdown:
        if not 0 <= args.shutdown_delay <= 20:
            problems.append("--shutdown-delay must be between 0 and 20 seconds")
        if not 1 <= args.shutdown_after <= 60:
            problems.append("--shutdown-after must be between 1 and 60 seconds")
        if args.peers or args.url_of_running_server:
            problems.append("--shutdown signals servers it started itself, ours only: drop "
                            "--peers and --url-of-running-server")
    if problems:
        p.error("; ".join(problems))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    server_cpus, client_cpus = choose_cpus(args.pin)
    kind = choose_load_client(args.load_client)
    with session() as current:
        client = LoadClient(kind, args.connections, args.threads, client_cpus,
                            current.children, current.workroot)
        auth = None
        routes = [LIVENESS_ROUTE]
        if args.project_route and not args.shutdown:
            auth = prepare(current.workroot / "shared")
            routes.append(PROJECT_ROUTE)
            print(f"project route: {PROJECT_ROUTE} as a member, on {auth.database} "
                  f"({auth.counts}); HS256 token")
        specs = our_server_specs(args, auth)
        if args.shutdown:
            code = run_shutdown(specs, client, current, server_cpus, rounds=args.rounds,
                                delay=args.shutdown_delay, after=args.shutdown_after)
            current.keep = code != 0
            return code
        if args.peers:
            specs.extend(peer_specs(args, auth))
        run = Run(args, {s.name: s for s in specs}, client, current, server_cpus,
                  Figures(args.rounds), routes, {}, auth)
        code = measure_all(run)
        current.keep = code != 0
        return code


if __name__ == "__main__":
    sys.exit(run_cli(main))
