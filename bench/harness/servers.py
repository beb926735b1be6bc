"""Servers under load: how to start one, wait until it answers, and stop it."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import BenchError
from harness.children import Children, free_port

STARTUP_TIMEOUT = 90.0


class ServerExitedError(BenchError):
    """The server ended before it answered; ``output`` is what it wrote meanwhile."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass
class ServerSpec:
    """How to start one server, or where an already running one is.

    The placeholders ``{port}`` and ``{workdir}`` in ``argv`` and ``env`` are filled
    at each start: a free loopback port, and a fresh folder for its data and logs.
    """

    name: str
    description: str
    argv: list[str] = field(default_factory=list)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: set when the server was started by someone else
    url: str | None = None
    #: the server's own log file in ``{workdir}``, shown when it fails
    log_name: str = "server.log"
    #: answers 200 once the server is ready
    ready_path: str = "/livez"
    #: routes (as named in the tables) this server does not serve, left unmeasured
    skip_routes: tuple[str, ...] = ()


@dataclass
class RunningServer:
    """A server that answers on ``base_url``."""

    spec: ServerSpec
    base_url: str
    #: None for a server someone else started: we cannot see its processes
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    @property
    def pgid(self) -> int | None:
        """The server's process group (it leads one), for its CPU time."""
        return None if self.proc is None else self.proc.pid


def start_server(
    spec: ServerSpec,
    children: Children,
    workroot: Path,
    cpus: set[int] | None,
    timeout: float = STARTUP_TIMEOUT,
) -> RunningServer:
    """Start ``spec`` in a fresh folder under ``workroot`` and wait until it answers."""
    if spec.url is not None:
        try:
            wait_until_live(spec.url, spec.ready_path, None, (), timeout=5)
        except BenchError as exc:
            raise BenchError(f"is the server running? {exc}") from None
        return RunningServer(spec, spec.url)
    workdir = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=workroot))
    port = free_port()

    def fill(s: str) -> str:
        return s.replace("{port}", str(port)).replace("{workdir}", str(workdir))

    argv = [fill(a) for a in spec.argv]
    env = {k: fill(v) for k, v in spec.env.items()}
    console = workdir / "console.log"
    proc = children.spawn(argv, cwd=spec.cwd or workdir, env=env, output=console, cpus=cpus)
    server = RunningServer(spec, f"http://127.0.0.1:{port}", proc, workdir)
    try:
        wait_until_live(server.base_url, spec.ready_path, proc,
                        (workdir / spec.log_name, console), timeout)
    except BaseException:
        children.stop(proc)
        raise
    return server


def stop_server(server: RunningServer, children: Children) -> int | None:
    """SIGTERM a server we started (SIGKILL after a while); its exit code."""
    if server.proc is None:
        return None
    was_running = server.proc.poll() is None
    code = children.stop(server.proc)
    if was_running and code not in (0, -signal.SIGTERM, None):
        print(f"  note: {server.spec.name} exited with code {code} after SIGTERM; "
              f"see {server.workdir}")
    return code


@contextlib.contextmanager
def running(
    spec: ServerSpec, children: Children, workroot: Path, cpus: set[int] | None
) -> Iterator[RunningServer]:
    """A started server (unless it is already running) for the duration of the block."""
    server = start_server(spec, children, workroot, cpus)
    try:
        yield server
    finally:
        stop_server(server, children)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str, bytes]:
    """GET ``url``: (status, content type, body); raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def wait_until_live(
    base_url: str,
    path: str,
    proc: subprocess.Popen[bytes] | None,
    logs: Sequence[Path],
    timeout: float,
) -> None:
    """Return once ``path`` answers 200; raise when the server exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerExitedError(
                f"the server exited with code {proc.returncode} before {path} "
                f"answered.\n{log_tail(logs)}",
                "\n".join(read_log(log) for log in logs),
            )
        try:
            status, _, _ = http_get(base_url + path, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(
        f"{base_url}{path} did not answer 200 within {timeout:.0f} s "
        f"(last: {last}).\n{log_tail(logs)}"
    )


def read_log(log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except OSError:
        return ""


def log_tail(logs: Sequence[Path], lines: int = 25) -> str:
    out = []
    for log in logs:
        text = read_log(log).splitlines()[-lines:]
        if text:
            out.append(f"last lines of {log}:\n" + "\n".join("  | " + t for t in text))
    return "\n".join(out)


def check_loopback_url(url: str, option: str) -> str | None:
    """Why ``url`` is not the base URL of a server on this machine, or None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return f"{option} must look like http://127.0.0.1:8000, not {url!r}"
    if parts.path not in ("", "/"):
        return f"{option} takes the server's base URL, without a path"
    host = parts.hostname
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"{option} must be a loopback address (127.0.0.0/8, [::1] or "
        f"localhost), not {host!r}: this benchmark only loads servers on this machine"
    )
