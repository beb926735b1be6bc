"""HTTP benchmark: our server against bare FastAPI+uvicorn and Fastify peers.

    python bench/http_bench.py [--duration 10] [--connections 50] [--threads 1] [--rounds 3]
                         [--peers] [--url-of-running-server URL] [--json FILE]

Starts ``twistd -n installsure`` as users do (temp data dir, loopback port, logs to a
file), loads ``/livez`` and a small JSON route with ``wrk`` (or a fallback asyncio
client when wrk is missing), and prints req/s, p50 and p99. With ``--peers`` it also
installs (once, cached under ~/.cache/installsure-bench/) and runs a bare FastAPI and a
bare Fastify app, one server at a time, alternating round by round, and prints the
ratios against the targets of the foundation issue. See bench/README.rst.

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# --- what is measured -------------------------------------------------------------------

#: The liveness route, served by every server; the targets below are about this one.
LIVENESS_ROUTE = "/livez"
#: Candidates for "a small JSON GET route", first one that answers 200 JSON wins.
#: ``/api/health`` is deliberately absent: it checks Redis and the database.
SMALL_JSON_ROUTES = ("/info", "/live")

#: Targets from the foundation issue, for /livez: ours / peer >= factor.
TARGETS = {"fastapi": 2.0, "fastify": 0.3}

#: What the FastAPI peer installs: FastAPI with uvicorn as its docs recommend
#: (``uvicorn[standard]`` brings uvloop and httptools, which uvicorn then picks itself).
FASTAPI_REQUIREMENTS = ("fastapi>=0.115,<1", "uvicorn[standard]>=0.30,<1")
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

STARTUP_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
INSTALL_TIMEOUT = 900.0

WRK_SCRIPT = r"""
-- Prints the run's figures as one JSON line that bench/http_bench.py parses.
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


class BenchError(Exception):
    """A problem the user can act on; printed without a traceback."""


# --- figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One load run against one route."""

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


@dataclass
class ServerFigures:
    """Every round's measurements of one server, by route."""

    name: str
    description: str = ""
    rounds: dict[str, list[Measurement]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def median(self, route: str) -> dict[str, float] | None:
        runs = self.rounds.get(route)
        if not runs:
            return None
        out = {
            "rps": statistics.median(m.rps for m in runs),
            "p50_ms": statistics.median(m.p50_ms for m in runs),
            "p99_ms": statistics.median(m.p99_ms for m in runs),
            "errors": sum(m.errors for m in runs),
        }
        client_pct = [m.client_cpu_percent for m in runs if m.client_cpu_percent is not None]
        if client_pct:
            out["client_cpu_percent"] = statistics.median(client_pct)
        per_cpu = [m.per_cpu_s for m in runs if m.per_cpu_s is not None]
        cpu_pct = [m.cpu_percent for m in runs if m.cpu_percent is not None]
        if per_cpu and cpu_pct:
            out["per_cpu_s"] = statistics.median(per_cpu)
            out["cpu_percent"] = statistics.median(cpu_pct)
        return out


# --- child processes --------------------------------------------------------------------


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str, bytes]:
    """GET ``url``: (status, content type, body); raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def wait_until_live(
    base_url: str, proc: subprocess.Popen[bytes] | None, logs: Sequence[Path], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(
                f"the server exited with code {proc.returncode} before {LIVENESS_ROUTE} "
                f"answered.\n{log_tail(logs)}"
            )
        try:
            status, _, _ = http_get(base_url + LIVENESS_ROUTE, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(
        f"{base_url}{LIVENESS_ROUTE} did not answer 200 within {timeout:.0f} s "
        f"(last: {last}).\n{log_tail(logs)}"
    )


def log_tail(logs: Sequence[Path], lines: int = 25) -> str:
    out = []
    for log in logs:
        if log.exists() and log.stat().st_size:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"last lines of {log}:\n" + "\n".join("  | " + t for t in text))
    return "\n".join(out)


# --- servers ----------------------------------------------------------------------------


@dataclass
class ServerSpec:
    """How to start one server, or where an already running one is."""

    name: str
    description: str
    argv: list[str] = field(default_factory=list)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: set when the server was started by someone else
    url: str | None = None
    #: placeholders ``{port}`` and ``{workdir}`` in argv/env are filled per start
    log_name: str = "server.log"


def our_server_spec(args: argparse.Namespace) -> ServerSpec:
    if args.url_of_running_server:
        return ServerSpec(
            name="ours",
            description=f"already running at {args.url_of_running_server}",
            url=args.url_of_running_server.rstrip("/"),
        )
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
    argv = [
        str(twistd), "-n",
        "--logfile", "{workdir}/twistd.log",
        "--pidfile", "{workdir}/twistd.pid",
        "installsure",
        "--listen", "tcp:{port}:interface=127.0.0.1",
        "--data-dir", "{workdir}/data",
        *args.server_arg,
    ]
    return ServerSpec(
        name="ours",
        description="twistd -n installsure (defaults: embedded Redis, SQLite, access log on)",
        argv=argv,
        env=env,
        log_name="twistd.log",
    )


def fastapi_spec(python: Path, versions: str, *, access_log: bool) -> ServerSpec:
    argv = [
        str(python), "-m", "uvicorn", "fastapi_app:app",
        "--host", "127.0.0.1", "--port", "{port}",
    ]
    if not access_log:
        argv.append("--no-access-log")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Keep bench/_peers/ free of __pycache__ folders.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
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
    )


@contextlib.contextmanager
def running(
    spec: ServerSpec, children: Children, workroot: Path, cpus: set[int] | None
) -> Iterator[tuple[str, int | None]]:
    """Start ``spec`` (unless it is already running), yield (base URL, process group)."""
    if spec.url is not None:
        try:
            wait_until_live(spec.url, None, (), timeout=5)
        except BenchError as exc:
            raise BenchError(f"is the server running? {exc}") from None
        yield spec.url, None
        return
    workdir = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=workroot))
    port = free_port()

    def fill(s: str) -> str:
        return s.replace("{port}", str(port)).replace("{workdir}", str(workdir))

    argv = [fill(a) for a in spec.argv]
    env = {k: fill(v) for k, v in spec.env.items()}
    console = workdir / "console.log"
    proc = children.spawn(argv, cwd=spec.cwd or workdir, env=env, output=console, cpus=cpus)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(base_url, proc, (workdir / spec.log_name, console), STARTUP_TIMEOUT)
        yield base_url, proc.pid
    finally:
        was_running = proc.poll() is None
        code = children.stop(proc)
        if was_running and code not in (0, -signal.SIGTERM, None):
            print(f"  note: {spec.name} exited with code {code} after SIGTERM; see {workdir}")


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


# --- peer installation ------------------------------------------------------------------


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "installsure-bench"


def spec_key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


@contextlib.contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    """Two benchmark runs installing at once must not corrupt each other's cache."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_install(argv: Sequence[str], cwd: Path, what: str) -> None:
    print(f"  $ {' '.join(argv)}")
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BenchError(f"cannot install {what}: {exc.filename} not found") from None
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"installing {what} took more than {INSTALL_TIMEOUT:.0f} s; is the package "
            "registry reachable?"
        ) from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise BenchError(f"installing {what} failed (exit {done.returncode}):\n{tail}")


def ensure_fastapi() -> tuple[Path, str]:
    """A venv with FastAPI and uvicorn, made once; returns (python, versions)."""
    root = cache_root()
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = root / f"fastapi-py{pyver}-{spec_key(pyver, *FASTAPI_REQUIREMENTS)}"
    marker = venv / "installsure-bench-versions.txt"
    python = venv / "bin" / "python"
    with cache_lock(root):
        if not marker.exists():
            print(f"installing the FastAPI peer into {venv} (once; cached)")
            # A half-made venv from an interrupted run is not trusted.
            shutil.rmtree(venv, ignore_errors=True)
            run_install([sys.executable, "-m", "venv", str(venv)], root, "a venv for FastAPI")
            run_install(
                [str(python), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *FASTAPI_REQUIREMENTS],
                root, "FastAPI and uvicorn",
            )
            probe = subprocess.run(
                [str(python), "-c",
                 "import importlib.metadata as m; print(', '.join(f'{p} ' + m.version(p) "
                 "for p in ('fastapi', 'uvicorn', 'uvloop', 'httptools')))"],
                capture_output=True, text=True, timeout=60, check=False,
            )
            if probe.returncode != 0:
                raise BenchError(f"the FastAPI venv in {venv} is broken:\n{probe.stderr}")
            marker.write_text(probe.stdout.strip())
    return python, marker.read_text().strip()


def ensure_fastify() -> tuple[Path, str]:
    """A folder with fastify in node_modules and our app beside it; returns (dir, versions)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise BenchError(
            "node and npm are needed for the Fastify peer (apt-get install nodejs npm)"
        )
    node_version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    root = cache_root()
    folder = root / f"fastify-node{node_version}-{spec_key(node_version, *FASTIFY_REQUIREMENTS)}"
    marker = folder / "installsure-bench-versions.txt"
    with cache_lock(root):
        if not marker.exists():
            print(f"installing the Fastify peer into {folder} (once; cached)")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / "package.json").write_text(
                json.dumps({"name": "installsure-bench-fastify", "private": True}) + "\n"
            )
            run_install(
                ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                 *FASTIFY_REQUIREMENTS],
                folder, "Fastify",
            )
            pkg = json.loads((folder / "node_modules" / "fastify" / "package.json").read_text())
            marker.write_text(f"fastify {pkg['version']}, node {node_version}")
    # The app is copied every run, so edits to bench/_peers/ take effect; require()
    # resolves next to the script, where node_modules is.
    shutil.copy2(PEERS_DIR / "fastify_app.js", folder / "fastify_app.js")
    return folder, marker.read_text().strip()


# --- load generation --------------------------------------------------------------------


def run_wrk(
    url: str, *, duration: float, connections: int, threads: int, script: Path,
    cpus: set[int] | None, children: Children,
) -> Measurement:
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--timeout", "5s", "-s", str(script), url,
    ]
    out_file = script.parent / "wrk.out"
    out_file.write_bytes(b"")
    # wrk is the only child reaped while it runs, so the growth of our children's
    # resource usage is wrk's CPU time.
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = children.spawn(argv, cwd=script.parent, env=dict(os.environ), output=out_file,
                          cpus=cpus)
    try:
        proc.wait(duration + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 30:.0f} s") from None
    finally:
        children.stop(proc, timeout=5)
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (usage_after.ru_utime + usage_after.ru_stime) - (
        usage_before.ru_utime + usage_before.ru_stime
    )
    text = out_file.read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("INSTALLSURE_BENCH "):
            d = json.loads(line.split(" ", 1)[1])
            return Measurement(
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                errors=sum(v for k, v in d.items() if k.startswith("errors_")),
                p50_ms=d["p50_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                client="wrk",
                client_cpu_s=client_cpu,
            )
    raise BenchError(f"wrk printed no figures (exit {proc.returncode}):\n{text[-2000:]}")


async def _python_load(
    host: str, port: int, path: str, duration: float, connections: int
) -> Measurement:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n"
    ).encode()
    latencies: list[int] = []
    errors = 0
    deadline = time.monotonic() + duration

    async def one_client() -> None:
        # Like wrk: a connection that breaks or is closed is replaced until the end.
        while time.monotonic() < deadline:
            if not await one_connection():
                await asyncio.sleep(0.05)  # do not spin on a refusing server

    async def one_connection() -> bool:
        """Send requests on one connection; False when it failed."""
        nonlocal errors
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError):
            errors += 1
            return False
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter_ns()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                status = int(head.split(b" ", 2)[1])
                length, chunked, close = 0, False, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                    elif name == b"connection" and b"close" in value.lower():
                        close = True
                if chunked:
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                else:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter_ns() - started)
                if status >= 400:
                    errors += 1
                if close:
                    break
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return True

    started = time.monotonic()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(one_client() for _ in range(connections)))
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] / 1e6

    return Measurement(
        requests=len(latencies), seconds=elapsed, errors=errors,
        p50_ms=pct(50), p99_ms=pct(99), client="python",
        client_cpu_s=(usage_after.ru_utime + usage_after.ru_stime)
        - (usage_before.ru_utime + usage_before.ru_stime),
    )


def run_python_client(
    url: str, duration: float, connections: int, cpus: set[int] | None
) -> Measurement:
    parts = urllib.parse.urlsplit(url)
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        return asyncio.run(
            _python_load(parts.hostname or "127.0.0.1", parts.port or 80,
                         parts.path or "/", duration, connections)
        )
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class LoadClient:
    kind: str  # "wrk" or "python"
    duration: float
    warmup: float
    connections: int
    threads: int
    script: Path
    cpus: set[int] | None
    children: Children

    def measure(self, url: str, server_pgid: int | None) -> Measurement:
        if self.warmup > 0:
            self._run(url, self.warmup)
        if server_pgid is None:
            return self._run(url, self.duration)
        before = group_cpu_seconds(server_pgid)
        m = self._run(url, self.duration)
        used = group_cpu_seconds(server_pgid) - before
        return replace(m, server_cpu_s=used)

    def _run(self, url: str, duration: float) -> Measurement:
        if self.kind == "wrk":
            return run_wrk(url, duration=duration, connections=self.connections,
                           threads=self.threads, script=self.script, cpus=self.cpus,
                           children=self.children)
        return run_python_client(url, duration, self.connections, self.cpus)


# --- reporting --------------------------------------------------------------------------


def print_table(
    figures: Sequence[ServerFigures], routes: Sequence[str], threads: int = 1
) -> None:
    header = (
        f"{'server':<8} {'route':<7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'srv CPU':>7} {'req/CPU-s':>9}"
    )
    print()
    print(header + "  req/s of each round")
    print("-" * (len(header) + 22))
    for fig in figures:
        for route in routes:
            med = fig.median(route)
            if med is None:
                print(f"{fig.name:<8} {route:<7} {'-':>7}  not measured")
                continue
            each = " ".join(f"{m.rps:.0f}" for m in fig.rounds[route])
            cpu = f"{med['cpu_percent']:.0f} %" if "cpu_percent" in med else "-"
            per_cpu = f"{med['per_cpu_s']:.0f}" if "per_cpu_s" in med else "-"
            print(
                f"{fig.name:<8} {route:<7} {med['rps']:>7.0f} {med['p50_ms']:>7.2f} "
                f"{med['p99_ms']:>7.2f} {int(med['errors']):>6} {cpu:>7} {per_cpu:>9}  {each}"
            )
    print(
        "\nsrv CPU: CPU time of the server's processes / wall time (100 % = one core);"
        "\nreq/CPU-s: requests per CPU second of the server, little moved by other load."
    )
    for fig in figures:
        for route in routes:
            med = fig.median(route)
            if med is None or med.get("cpu_percent", 100) >= STARVED_CPU_PERCENT:
                continue
            why = "lost CPU to other work on the machine"
            if med.get("client_cpu_percent", 0) >= 80 * threads:
                why = (
                    "the load generator was the limit "
                    f"(its CPU: {med['client_cpu_percent']:.0f} %)"
                )
            print(
                f"note: {fig.name} {route} kept its core only {med['cpu_percent']:.0f} % busy: "
                f"{why}; its req/s is understated, its req/CPU-s is the better figure."
            )


def ratios(figures: dict[str, ServerFigures], routes: Sequence[str]) -> list[dict[str, Any]]:
    ours = figures.get("ours")
    out: list[dict[str, Any]] = []
    if ours is None:
        return out
    for peer in ("fastapi", "fastify"):
        other = figures.get(peer)
        if other is None:
            continue
        for route in routes:
            a, b = ours.median(route), other.median(route)
            if a is None or b is None or b["rps"] == 0:
                continue
            target = TARGETS[peer] if route == LIVENESS_ROUTE else None
            ratio = a["rps"] / b["rps"]
            per_cpu = None
            if a.get("per_cpu_s") and b.get("per_cpu_s"):
                per_cpu = a["per_cpu_s"] / b["per_cpu_s"]
            out.append({
                "route": route, "peer": peer, "ratio": ratio, "ratio_per_cpu_s": per_cpu,
                "target": target,
                "verdict": None if target is None else ("PASS" if ratio >= target else "MISS"),
                "round_ratios": round_ratios(ours.rounds.get(route), other.rounds.get(route)),
            })
    return out


def round_ratios(
    ours: Sequence[Measurement] | None, peer: Sequence[Measurement] | None
) -> list[float]:
    """ours / peer for each round, both measured minutes apart at most.

    The machine's speed drifts over a run; a round's two figures share most of its
    state, so the spread of these ratios shows how far the drift moved the verdict.
    Empty when a round is missing on either side (its pairs would not line up).
    """
    if not ours or not peer or len(ours) != len(peer):
        return []
    return [a.rps / b.rps for a, b in zip(ours, peer, strict=True) if b.rps > 0]


def print_ratios(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    print()
    print("ratios, ours / peer      req/s  (target, verdict)       req/CPU-s  "
          "rounds' req/s ratios: median (range)")
    for row in rows:
        verdict = ""
        if row["target"] is not None:
            verdict = f">= {row['target']}x  {row['verdict']}"
        per_cpu = row["ratio_per_cpu_s"]
        per_cpu_text = f"{per_cpu:6.2f}x" if per_cpu is not None else "     -"
        by_round = row["round_ratios"]
        by_round_text = (
            f"{statistics.median(by_round):.2f}x ({min(by_round):.2f}-{max(by_round):.2f})"
            if by_round else "-"
        )
        print(
            f"  {row['route']:<7} ours/{row['peer']:<8} {row['ratio']:6.2f}x  {verdict:<20}"
            f"  {per_cpu_text}     {by_round_text}"
        )


# --- command line -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/http_bench.py",
        description="Load /livez and a small JSON route of our server (and, with --peers, "
        "of bare FastAPI and Fastify apps) and print req/s, p50, p99 and ratios.",
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
    p.add_argument("--fastapi-access-log", action=argparse.BooleanOptionalAction,
                   default=True, help="uvicorn's access log (default on, as uvicorn ships)")
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
        problem = check_loopback_url(args.url_of_running_server)
        if problem:
            problems.append(problem)
    if problems:
        p.error("; ".join(problems))
    return args


def check_loopback_url(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return f"--url-of-running-server must look like http://127.0.0.1:8000, not {url!r}"
    if parts.path not in ("", "/"):
        return "--url-of-running-server takes the server's base URL, without a path"
    host = parts.hostname
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"--url-of-running-server must be a loopback address (127.0.0.0/8, [::1] or "
        f"localhost), not {host!r}: this benchmark only loads servers on this machine"
    )


def choose_cpus(pin: bool | None) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs), or (None, None) when not pinning."""
    available = sorted(os.sched_getaffinity(0))
    if pin is None:
        pin = len(available) >= 2
    if not pin:
        return None, None
    if len(available) < 2:
        raise BenchError("--pin needs at least 2 CPUs")
    return {available[-1]}, set(available[:-1])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    server_cpus, client_cpus = choose_cpus(args.pin)
    kind = args.load_client
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "python"
        if kind == "python":
            print("wrk not found (apt-get install wrk): FALLING BACK to the built-in asyncio "
                  "load client, which saturates sooner; figures are lower bounds.")
    elif kind == "wrk" and shutil.which("wrk") is None:
        raise BenchError("--load-client wrk: wrk not found (apt-get install wrk)")

    children = Children()
    workroot = Path(tempfile.mkdtemp(prefix="installsure-bench-"))
    script = workroot / "report.lua"
    script.write_text(WRK_SCRIPT)
    client = LoadClient(kind, args.duration, args.warmup, args.connections, args.threads,
                        script, client_cpus, children)

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Also when started with SIGINT ignored (a background job of a script), Ctrl-C or
    # kill -INT must still stop the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    keep_logs = True
    try:
        specs = [our_server_spec(args)]
        if args.peers:
            specs.extend(peer_specs(args))
        code = measure_all(args, specs=specs, client=client, children=children,
                           workroot=workroot, server_cpus=server_cpus)
        keep_logs = code != 0
        return code
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers")
        return 130
    finally:
        # A second Ctrl-C must not leave servers behind; stopping is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop_all()
        if keep_logs:
            print(f"the servers' data and logs are kept in {workroot}", file=sys.stderr)
        else:
            shutil.rmtree(workroot, ignore_errors=True)


def peer_specs(args: argparse.Namespace) -> list[ServerSpec]:
    def fastapi() -> ServerSpec:
        return fastapi_spec(*ensure_fastapi(), access_log=args.fastapi_access_log)

    def fastify() -> ServerSpec:
        return fastify_spec(*ensure_fastify())

    specs = []
    for name, make in (("fastapi", fastapi), ("fastify", fastify)):
        try:
            specs.append(make())
        except BenchError as exc:
            print(f"SKIPPING the {name} peer: {exc}")
    return specs


def measure_all(
    args: argparse.Namespace,
    *,
    specs: Sequence[ServerSpec],
    client: LoadClient,
    children: Children,
    workroot: Path,
    server_cpus: set[int] | None,
) -> int:
    figures = {s.name: ServerFigures(s.name, s.description) for s in specs}
    routes: list[str] = [LIVENESS_ROUTE]
    small_route: str | None = None

    print(f"load: {client.kind}, {args.connections} connections, {args.threads} thread(s), "
          f"{args.duration:g} s per route after {args.warmup:g} s warm-up, "
          f"{args.rounds} round(s)")
    if server_cpus:
        print(f"pinning: servers we start on CPU {sorted(server_cpus)}, load generator on "
              f"CPU {sorted(client.cpus or ())}")
    else:
        print("pinning: off")
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        print(f"note: load average is {load1:.2f} before we start; other work on this "
              "machine will show in the figures (compare ratios, not absolutes)")
    for spec in specs:
        print(f"  {spec.name:<8} {spec.description}")

    for rnd in range(1, args.rounds + 1):
        for spec in specs:
            fig = figures[spec.name]
            print(f"round {rnd}/{args.rounds}: {spec.name}", flush=True)
            try:
                with running(spec, children, workroot, server_cpus) as (base_url, pgid):
                    if small_route is None:
                        # Ours decides the route (peers serve the same paths).
                        small_route = pick_small_json_route(base_url)
                        routes.append(small_route)
                        print(f"  small JSON route: {small_route} "
                              f"(first of {', '.join(SMALL_JSON_ROUTES)} that answers)")
                    for route in routes:
                        m = client.measure(base_url + route, pgid)
                        fig.rounds.setdefault(route, []).append(m)
                        note = f", {m.errors} ERRORS" if m.errors else ""
                        if m.cpu_percent is not None:
                            note += f"  server CPU {m.cpu_percent:.0f} %"
                        if m.client_cpu_percent is not None:
                            note += f", {m.client} CPU {m.client_cpu_percent:.0f} %"
                        print(f"  {route:<8} {m.rps:>9.0f} req/s  p50 {m.p50_ms:.2f} ms  "
                              f"p99 {m.p99_ms:.2f} ms{note}", flush=True)
            except BenchError as exc:
                if spec.name == "ours" and rnd == 1:
                    # Nothing to compare against: stop here, with the reason.
                    raise
                fig.failures.append(str(exc))
                print(f"  FAILED: {exc}")

    print_table(list(figures.values()), routes, threads=args.threads)
    rows = ratios(figures, routes)
    print_ratios(rows)
    if args.json:
        write_json(args, figures, routes, rows, client)
        print(f"\nfigures written to {args.json}")
    failed = [name for name, fig in figures.items() if fig.failures]
    if failed:
        print(f"\nsome runs FAILED ({', '.join(failed)}): see the messages above")
        return 1
    return 0


def write_json(
    args: argparse.Namespace,
    figures: dict[str, ServerFigures],
    routes: Sequence[str],
    rows: Sequence[dict[str, Any]],
    client: LoadClient,
) -> None:
    doc = {
        "settings": {
            "duration_s": args.duration, "warmup_s": args.warmup,
            "connections": args.connections, "threads": args.threads,
            "rounds": args.rounds, "load_client": client.kind,
            "pinned": client.cpus is not None,
        },
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "routes": list(routes),
        "servers": {
            name: {
                "description": fig.description,
                "median": {r: fig.median(r) for r in routes},
                "rounds": {r: [asdict(m) | {"rps": m.rps, "per_cpu_s": m.per_cpu_s} for m in ms]
                           for r, ms in fig.rounds.items()},
                "failures": fig.failures,
            }
            for name, fig in figures.items()
        },
        "ratios": list(rows),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")


def run(argv: Sequence[str] | None = None) -> int:
    try:
        return main(argv)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
