"""Upload benchmark: a 100 MiB file streamed to our server, on both wires.

    python bench/upload_bench.py [--size-mib 100] [--rounds 3] [--wire fast,stock]
                                 [--json FILE]

Starts ``twistd -n installsure`` as users do (temp data dir with SQLite, local file
storage and the embedded Redis, loopback port), once per HTTP wire, with an operator
token (``API_SECRET``) to authenticate. Each round sends one file of ``--size-mib`` MiB
(a PNG by its first bytes) as ``multipart/form-data`` from a raw socket, measures the
time from the first byte sent to the 201, and samples the server's resident memory
(``/proc/<pid>/status``, every 5 ms) and its CPU time (all its threads) while it runs;
then downloads the file back (streamed from storage) the same way, and deletes it. Both
wires' servers run side by side and take turns round by round (the order alternating),
so a busy machine slows both alike. Prints MB/s, MB per server CPU second (steadier
than MB/s on a shared machine) and RSS growth per round, the medians, and the ratios
against the targets (upload >= 150 MB/s, RSS growth <= 32 MiB) and between the wires.

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import BenchError, run_cli
from harness.children import session
from harness.servers import ServerSpec, running

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = "upload-bench-operator-token-" + "x7Kp2Qm9Lw4Rz8Tn"
BOUNDARY = "----upload-bench-boundary"
MIB = 1024 * 1024
TARGET_MB_S = 150.0
TARGET_RSS_MIB = 32.0
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
OUR_CONFIG_ENV = (
    "PORT", "HOST", "REDIS_URL", "JWT_SECRET", "API_SECRET", "NODE_ENV",
    "ENABLE_REAL_TIME_SYNC", "ENABLE_FILE_PROCESSING", "ENABLE_EMAIL_NOTIFICATIONS",
)


@dataclass
class Round:
    wire: str
    upload_mb_s: float
    upload_mb_per_cpu_s: float
    upload_rss_growth_mib: float
    download_mb_s: float
    download_rss_growth_mib: float


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process (every thread of it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


class RssPeak:
    """The peak resident memory of ``pid`` while the block runs (sampled)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss_kib(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.005)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / 1024


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response with Content-Length, read to its end."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError(f"the server closed the connection: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    parts = [body]
    got = len(body)
    while got < length:
        chunk = sock.recv(1024 * 1024)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return status, b"".join(parts)


def upload(port: int, size: int) -> tuple[float, dict[str, object]]:
    """Send one file of ``size`` bytes; seconds taken and the file's record."""
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="bench.png"\r\nContent-Type: image/png\r\n\r\n').encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = PNG_HEAD + os.urandom(MIB - len(PNG_HEAD))
    filler = os.urandom(MIB)
    length = len(head) + size + len(tail)
    request = (f"POST /api/files/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {SECRET}\r\n"
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
               f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        started = time.perf_counter()
        sock.sendall(request + head)
        sock.sendall(block)
        left = size - len(block)
        while left > 0:
            piece = filler if left >= MIB else filler[:left]
            sock.sendall(piece)
            left -= len(piece)
        sock.sendall(tail)
        status, body = read_response(sock)
        elapsed = time.perf_counter() - started
    if status != 201:
        raise BenchError(f"the upload was answered {status}: {body[:300]!r}")
    record: dict[str, object] = json.loads(body)["data"][0]
    return elapsed, record


def download(port: int, file_id: object, size: int) -> float:
    request = (f"GET /api/files/{file_id}/download HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {SECRET}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        status, body = read_response(sock)
        elapsed = time.perf_counter() - started
    if status != 200 or len(body) != size:
        raise BenchError(f"the download was answered {status} with {len(body)} bytes")
    return elapsed


def delete(port: int, file_id: object) -> None:
    request = (f"DELETE /api/files/{file_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {SECRET}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        read_response(sock)


def spec(wire: str) -> ServerSpec:
    twistd = Path(sys.executable).parent / "twistd"
    if not twistd.exists():
        raise BenchError(f"{twistd} not found: install Twisted into this venv")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INSTALLSURE_") and k not in OUR_CONFIG_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env |= {"API_SECRET": SECRET, "INSTALLSURE_HTTP_WIRE": wire}
    return ServerSpec(
        name=f"ours-{wire}",
        description=f"twistd -n installsure, http.wire={wire}",
        argv=[str(twistd), "-n", "--logfile", "{workdir}/twistd.log",
              "--pidfile", "{workdir}/twistd.pid", "installsure",
              "--listen", "tcp:{port}:interface=127.0.0.1", "--data-dir", "{workdir}/data"],
        env=env, log_name="twistd.log",
    )


def one_round(wire: str, port: int, pid: int, size: int) -> Round:
    cpu = cpu_seconds(pid)
    with RssPeak(pid) as up:
        seconds, record = upload(port, size)
    cpu = cpu_seconds(pid) - cpu
    with RssPeak(pid) as down:
        back = download(port, record["id"], size)
    delete(port, record["id"])
    return Round(wire, size / seconds / 1e6, size / max(cpu, 1e-9) / 1e6, up.growth_mib,
                 size / back / 1e6, down.growth_mib)


def measure(wires: list[str], size: int, rounds: int) -> dict[str, list[Round]]:
    out: dict[str, list[Round]] = {wire: [] for wire in wires}
    with session() as current, contextlib.ExitStack() as stack:
        servers = {}
        for wire in wires:
            server = stack.enter_context(
                running(spec(wire), current.children, current.workroot, None))
            assert server.proc is not None
            port = int(server.base_url.rsplit(":", 1)[1])
            _warm, record = upload(port, 2 * MIB)  # code paths loaded before measuring
            download(port, record["id"], 2 * MIB)
            delete(port, record["id"])
            servers[wire] = (port, server.proc.pid)
        for number in range(1, rounds + 1):
            order = wires if number % 2 else list(reversed(wires))
            for wire in order:
                port, pid = servers[wire]
                figures = one_round(wire, port, pid, size)
                out[wire].append(figures)
                print(f"  round {number} {wire:5}: upload {figures.upload_mb_s:7.1f} MB/s, "
                      f"{figures.upload_mb_per_cpu_s:6.1f} MB/CPU-s (RSS +"
                      f"{figures.upload_rss_growth_mib:5.1f} MiB); download "
                      f"{figures.download_mb_s:7.1f} MB/s (RSS +"
                      f"{figures.download_rss_growth_mib:5.1f} MiB)", flush=True)
        current.keep = False  # everything measured: the scratch folder may go
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wire", default="fast,stock")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    size = args.size_mib * MIB
    wires = [w.strip() for w in args.wire.split(",") if w.strip()]
    print(f"upload of {args.size_mib} MiB, {args.rounds} rounds, wires taking turns")
    results = measure(wires, size, args.rounds)
    print()
    print(f"{'wire':6} {'upload MB/s':>12} {'vs 150':>7} {'MB/CPU-s':>9} {'RSS MiB':>8} "
          f"{'vs 32':>6} {'download MB/s':>14} {'RSS MiB':>8}")
    medians: dict[str, tuple[float, float]] = {}
    for wire, rounds in results.items():
        up = statistics.median(r.upload_mb_s for r in rounds)
        per_cpu = statistics.median(r.upload_mb_per_cpu_s for r in rounds)
        rss = max(r.upload_rss_growth_mib for r in rounds)
        down = statistics.median(r.download_mb_s for r in rounds)
        down_rss = max(r.download_rss_growth_mib for r in rounds)
        medians[wire] = (up, per_cpu)
        print(f"{wire:6} {up:12.1f} {up / TARGET_MB_S:6.2f}x {per_cpu:9.1f} {rss:8.1f} "
              f"{rss / TARGET_RSS_MIB:5.2f}x {down:14.1f} {down_rss:8.1f}")
    if "fast" in medians and "stock" in medians:
        (fast, fast_cpu), (stock, stock_cpu) = medians["fast"], medians["stock"]
        print(f"\nupload fast/stock: {fast / stock:.2f}x in MB/s, "
              f"{fast_cpu / stock_cpu:.2f}x in MB per CPU second")
    print("(MB/s: median of the rounds; RSS: the largest growth over the server's "
          "resident memory before the transfer)")
    if args.json:
        args.json.write_text(json.dumps(
            {w: [asdict(r) for r in rs] for w, rs in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
