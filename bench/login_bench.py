"""Sign-in benchmark: logins per second (argon2id bound) and what they do to other requests.

    python bench/login_bench.py [--duration 10] [--rounds 3] [--login-clients 8]
                                [--other-clients 8] [--argon2 2,19456,1]
                                [--password-threads 2]

Starts ``twistd -n installsure`` as users do (temp data dir with its embedded Redis and
SQLite, loopback port), registers accounts, then measures two phases of ``--duration``
seconds each, alternating their order round by round (``--rounds``) in one run:

1. ``GET /api/auth/me`` with a valid token alone (token verification, the revocation
   check, one row), from ``--other-clients`` keep-alive connections;
2. the same while ``--login-clients`` connections sign in as fast as they can.

It prints the medians over rounds of logins/s, of the ``/me`` throughput and of its
p50/p99 in both phases, and the ratios (phase 2 over phase 1). The clients are Python
threads on the same cores as the server, so the /me figures are bounded by the client
and its latencies include the client's own waits: compare the phases, not the absolute
numbers. A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "benchmark-orchid-7731"  # noqa: S105 - a throw-away account


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(conn: http.client.HTTPConnection, method: str, path: str,
            body: object = None, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    return response.status, response.read()


def start_server(workdir: Path, port: int, argon2: tuple[int, int, int],
                 threads: int) -> subprocess.Popen[bytes]:
    twistd = Path(sys.executable).parent / "twistd"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTALLSURE_")}
    env.update({
        "PYTHONPATH": str(ROOT),
        "INSTALLSURE_AUTH_ARGON2_TIME_COST": str(argon2[0]),
        "INSTALLSURE_AUTH_ARGON2_MEMORY_KIB": str(argon2[1]),
        "INSTALLSURE_AUTH_ARGON2_PARALLELISM": str(argon2[2]),
        "INSTALLSURE_AUTH_PASSWORD_THREADS": str(threads),
        # The benchmark signs in far more often than any person: no limits, no throttle.
        "INSTALLSURE_HTTP_RATE_LIMIT_ENABLED": "false",
        "INSTALLSURE_AUTH_LOGIN_FREE_FAILURES_PER_ACCOUNT": "1000000",
        "INSTALLSURE_AUTH_LOGIN_FREE_FAILURES_PER_ADDRESS": "1000000",
        "INSTALLSURE_LOGGING_LEVEL": "warn",
    })
    log = (workdir / "server.log").open("wb")
    return subprocess.Popen(
        [str(twistd), "--pidfile=", "-n", "installsure", "--data-dir", str(workdir / "data"),
         "--listen", f"tcp:{port}:interface=127.0.0.1", "--environment", "test"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(port: int, server: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited:\n" + (workdir / "server.log").read_text())
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            if request(conn, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server never became ready:\n" + (workdir / "server.log").read_text())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def hammer(port: int, clients: int, seconds: float, one: object) -> list[float]:
    """Run ``one(conn)`` in ``clients`` threads for ``seconds``; every latency in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            one(conn, n)  # type: ignore[operator]
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--login-clients", type=int, default=8)
    parser.add_argument("--other-clients", type=int, default=8)
    parser.add_argument("--argon2", default="2,19456,1",
                        help="time cost, memory KiB, lanes (default: the server's defaults)")
    parser.add_argument("--password-threads", type=int, default=0,
                        help="auth.password_threads (default 0: the server's own choice, "
                             "one fewer than the CPUs, 1 to 4)")
    args = parser.parse_args()
    argon2 = tuple(int(part) for part in args.argon2.split(","))
    assert len(argon2) == 3, "--argon2 takes three numbers"
    workdir = Path(tempfile.mkdtemp(prefix="installsure-login-bench-"))
    port = free_port()
    server = start_server(workdir, port, argon2, args.password_threads)  # type: ignore[arg-type]
    try:
        wait_ready(port, server, workdir)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        emails = [f"bench{n}@example.com" for n in range(args.login_clients)]
        tokens = []
        for email in emails:
            status, body = request(conn, "POST", "/api/auth/register",
                                   {"email": email, "password": PASSWORD, "name": "Bench"})
            assert status == 201, body
            tokens.append(json.loads(body)["data"]["accessToken"])

        def me(c: http.client.HTTPConnection, n: int) -> None:
            status, _ = request(c, "GET", "/api/auth/me", token=tokens[n % len(tokens)])
            assert status == 200, status

        def login(c: http.client.HTTPConnection, n: int) -> None:
            status, _ = request(c, "POST", "/api/auth/login",
                                {"email": emails[n % len(emails)], "password": PASSWORD})
            assert status == 200, status

        rounds: list[dict[str, list[float]]] = []
        for number in range(args.rounds):
            measured: dict[str, list[float]] = {}
            for phase in (("alone", "with") if number % 2 == 0 else ("with", "alone")):
                if phase == "alone":
                    measured["alone"] = hammer(port, args.other_clients, args.duration, me)
                    continue
                logins: list[float] = []
                runner = threading.Thread(target=lambda out=logins: out.extend(
                    hammer(port, args.login_clients, args.duration, login)))
                runner.start()
                measured["with"] = hammer(port, args.other_clients, args.duration, me)
                runner.join()
                measured["logins"] = logins
            rounds.append(measured)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    seconds = args.duration

    def median_of(key: str, figure: object) -> float:
        return statistics.median(figure(r[key]) for r in rounds)  # type: ignore[operator]

    def rate(values: list[float]) -> float:
        return len(values) / seconds

    def p50(values: list[float]) -> float:
        return statistics.median(values)

    def p99(values: list[float]) -> float:
        return percentile(values, 0.99)

    print(f"argon2id t={argon2[0]} m={argon2[1]} KiB p={argon2[2]}, "
          f"{args.password_threads or 'default'} password threads, {os.cpu_count()} CPUs, "
          f"medians of {args.rounds} rounds of {seconds:g} s")
    print(f"logins/s                      {median_of('logins', rate):8.1f}   "
          f"(p50 {median_of('logins', p50):.0f} ms, p99 {median_of('logins', p99):.0f} ms)")
    for label, key in (("GET /api/auth/me alone", "alone"),
                       ("GET /api/auth/me with logins", "with")):
        print(f"{label:<30}{median_of(key, rate):8.1f} req/s   "
              f"p50 {median_of(key, p50):6.2f} ms   p99 {median_of(key, p99):6.2f} ms")
    print(f"ratio with/without logins     req/s "
          f"{median_of('with', rate) / max(0.001, median_of('alone', rate)):.2f}   "
          f"p99 {median_of('with', p99) / max(0.001, median_of('alone', p99)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
