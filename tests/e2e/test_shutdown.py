"""End to end: SIGTERM to ``twistd -n installsure`` under load, as a load balancer and
its clients see it (README.rst, "Stopping")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from tests.e2e.keepalive import (
    Exchange,
    LoopingClient,
    one_request,
    open_kept_alive,
    open_looping,
)
from tests.e2e.server import TWISTD, ServerProcess, child_environment
from tests.e2e.test_daemon import alive, daemon_pid
from tests.fixtures.redis import RedisServerProcess, free_port

pytestmark = pytest.mark.e2e

PHASES = ("shutdown 1/4", "shutdown 2/4", "shutdown 3/4", "shutdown 4/4",
          "shutdown: work finished")


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def phases_in_order(output: str) -> bool:
    """Each phase line once, in order."""
    positions = [output.find(phase) for phase in PHASES]
    return -1 not in positions and positions == sorted(positions) and all(
        output.count(phase) == 1 for phase in PHASES)


async def refused(port: int) -> bool:
    """Whether a new connection to ``port`` is refused."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1)
    try:
        protocol = await endpoint.connect(Factory.forProtocol(Protocol))
    except ConnectError:
        return True
    assert protocol.transport is not None
    protocol.transport.loseConnection()
    return False


async def first_refusal(port: int, within: float) -> float:
    """When (time.monotonic) a new connection is first refused."""
    deadline = time.monotonic() + within
    while not await refused(port):
        assert time.monotonic() < deadline, "the listener never closed"
        await sleep(0.02)
    return time.monotonic()


def metric(exchange: Exchange, name: str) -> float:
    """The value of the metric ``name`` (without labels) in a /metrics answer."""
    assert exchange.status == 200, exchange
    for line in exchange.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def unanswered(clients: list[LoopingClient]) -> list[Exchange]:
    return [e for c in clients for e in c.unanswered]


@pytest_twisted.ensureDeferred
async def test_sigterm_under_load_answers_every_request_and_exits_0(
    tmp_path: Path, wire: str
) -> None:
    """On each HTTP wire: 50 kept-alive connections loop GET /livez; SIGTERM with
    shutdown.delay 2 s: during the delay /readyz answers 503 and /livez 200 on new
    connections while the kept-alive ones are served as before (keep-alive); once the
    listener refuses connections every request written gets Connection: close; not one
    request written on an open connection goes unanswered; /metrics counts the drain
    until its connection's last answer; one line per phase; exit status 0."""
    delay = 2.0
    server = ServerProcess(tmp_path, "--environment", "test", env={
        "INSTALLSURE_SHUTDOWN_DELAY": str(delay), "INSTALLSURE_SHUTDOWN_GRACE": "10",
        "INSTALLSURE_HTTP_WIRE": wire})
    server.start()
    try:
        await server.wait_until("/readyz")
        scraper = await open_kept_alive(server.port)
        scrapes: list[Exchange] = []

        async def scrape() -> None:
            # Like Prometheus on a kept-alive connection, more often than it would.
            while not scrapes or not scrapes[-1].closes:
                scrapes.append(await scraper.get("/metrics"))
                if scrapes[-1].status is None:
                    return
                await sleep(0.2)

        scraping = defer.ensureDeferred(scrape())
        clients = [await open_looping(server.port, "/livez") for _ in range(50)]
        await sleep(1.0)
        assert all(len(c.exchanges) > 1 for c in clients), "a client made no progress"
        signalled = time.monotonic()
        server.terminate()
        await sleep(0.3)
        probes: list[Exchange] = []
        while time.monotonic() - signalled < delay - 0.4:
            probes.append(await one_request(server.port, "/readyz"))
            probes.append(await one_request(server.port, "/livez"))
            await sleep(0.05)
        closed_at = await first_refusal(server.port, within=10)
        await defer.gatherResults([c.lost for c in clients])
        await scraping
        code = await server.wait_exit(30)
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output
    assert unanswered(clients) == [], f"requests cut on an open connection:\n{output}"
    assert {(p.path, p.status) for p in probes} == {("/readyz", 503), ("/livez", 200)}
    assert len(probes) >= 4
    exchanges = [e for c in clients for e in c.exchanges]
    during = [e for e in exchanges if signalled + 0.3 < e.written_at < signalled + delay - 0.4]
    assert len(during) > 50, "the kept-alive connections were not served during the delay"
    assert not [e for e in during if e.closes or e.status != 200]
    after = [e for e in exchanges if e.written_at > closed_at]
    assert all(e.closes for e in after), [e for e in after if not e.closes]
    # Each connection ended with a response saying so, none with a close out of the blue.
    assert all(c.exchanges[-1].closes for c in clients)
    # /metrics counts it all until the end, on a connection kept open.
    announcing = [e for e in scrapes if signalled + 0.3 < e.written_at < signalled + 1.6]
    assert announcing
    assert {metric(e, "installsure_shutdown_phase") for e in announcing} == {1}
    assert min(metric(e, "installsure_http_connections_open") for e in announcing) >= 51
    assert not any(e.closes for e in announcing)
    last = scrapes[-1]  # the first answer after the listener closed: its last
    assert last.closes
    assert metric(last, "installsure_shutdown_phase") in (3, 4)
    assert phases_in_order(output), output
    assert "Traceback" not in output


@pytest_twisted.ensureDeferred
async def test_slow_requests_finish_within_the_grace_or_get_503_at_its_end(
    tmp_path: Path,
) -> None:
    """With shutdown.delay 1 s and shutdown.grace 5 s: a request longer than the delay
    finishes inside the grace; one longer than the grace is answered 503 at its end and
    logged; a POST whose body is still arriving at SIGTERM is read to the end (sent
    after the listener closed) and answered. Exit status 0, soon after the grace."""
    server = ServerProcess(tmp_path, "--environment", "test", test_routes=True, env={
        "INSTALLSURE_SHUTDOWN_DELAY": "1", "INSTALLSURE_SHUTDOWN_GRACE": "5"})
    server.start()
    body = b"x" * 200_000
    head = (b"POST /test/upload HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/octet-"
            b"stream\r\nContent-Length: %d\r\n\r\n" % len(body))
    try:
        await server.wait_until("/readyz")

        def send_the_rest_later(protocol: Any) -> None:
            reactor.callLater(2.5, protocol.transport.write, body[120_000:])

        within = defer.ensureDeferred(one_request(server.port, "/test/slow/3"))
        beyond = defer.ensureDeferred(one_request(server.port, "/test/slow/60"))
        upload = defer.ensureDeferred(one_request(
            server.port, "/test/upload", head + body[:120_000], send_the_rest_later))
        await sleep(0.5)
        signalled = time.monotonic()
        server.terminate()
        finished, cut, uploaded = await defer.gatherResults([within, beyond, upload])
        code = await server.wait_exit(30)
        stopped_after = time.monotonic() - signalled
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output
    assert (finished.status, json.loads(finished.body)["data"]) == (200, {"slept": 3.0})
    assert finished.closes
    assert cut.status == 503, output
    assert json.loads(cut.body)["code"] == "UNAVAILABLE"
    assert cut.answered_at is not None
    assert 4.0 < cut.answered_at - signalled < 8.0
    assert (uploaded.status, json.loads(uploaded.body)["data"]) == (200, {"received": 200_000})
    assert uploaded.closes
    assert "GET /test/slow/60 (request" in output
    assert "at the end of the grace: answered 503" in output
    assert "1 request answered 503 at the end of the grace" in output
    assert stopped_after < 12, output
    assert phases_in_order(output), output


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
@pytest_twisted.ensureDeferred
async def test_a_second_stop_signal_skips_the_rest_of_the_delay(
    tmp_path: Path, second: signal.Signals
) -> None:
    """With a 30 s delay, a second SIGTERM (or a SIGINT) after the first ends the delay:
    the server drains and exits 0 within seconds, without a traceback."""
    server = ServerProcess(tmp_path, "--environment", "test", env={
        "INSTALLSURE_SHUTDOWN_DELAY": "30", "INSTALLSURE_SHUTDOWN_GRACE": "40"})
    server.start()
    try:
        await server.wait_until("/readyz")
        server.terminate()
        await server.wait_until("/readyz", status=503, timeout=10)
        assert server.process is not None
        hurried = time.monotonic()
        server.process.send_signal(second)
        code = await server.wait_exit(20)
        took = time.monotonic() - hurried
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output
    assert took < 10, output
    assert "skipping the rest of the delay" in output
    assert phases_in_order(output), output
    assert "Traceback" not in output


@pytest_twisted.ensureDeferred
async def test_a_worker_stops_without_a_delay_through_the_same_phases(tmp_path: Path) -> None:
    """--role worker has no /readyz to announce on: shutdown.delay does not apply, the
    phases run (nothing to close), jobs are accounted for, exit status 0."""
    server = ServerProcess(tmp_path, "--environment", "test", "--role", "worker", env={
        "INSTALLSURE_SHUTDOWN_DELAY": "20", "INSTALLSURE_SHUTDOWN_GRACE": "30"})
    server.start()
    try:
        deadline = time.monotonic() + 30
        while "runs queues" not in server.output():
            assert server.process is not None
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, server.output()
            await sleep(0.1)
        signalled = time.monotonic()
        code = await server.stop(30)
        took = time.monotonic() - signalled
    finally:
        server.kill()
    output = server.output()
    assert code == 0, output
    assert took < 10, output
    assert "announce: no delay" in output
    assert "0 jobs returned to their queue" in output
    assert phases_in_order(output), output


@pytest_twisted.ensureDeferred
async def test_a_daemonized_server_drains_the_same_way(tmp_path: Path) -> None:
    """Daemonized (no -n, --pidfile and --logfile): SIGTERM turns /readyz 503 for the
    delay while /livez answers, then the daemon goes, its log holding every phase."""
    redis = RedisServerProcess(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis.start()
    pidfile, logfile, port = tmp_path / "twistd.pid", tmp_path / "server.log", free_port()
    pid = None
    try:
        started = await threads.deferToThread(
            subprocess.run,
            [str(TWISTD), f"--pidfile={pidfile}", f"--logfile={logfile}", "installsure",
             "--data-dir", str(tmp_path / "data"), "--environment", "test",
             "--listen", f"tcp:{port}:interface=127.0.0.1", "--redis-url", redis.url],
            env=child_environment({"INSTALLSURE_SHUTDOWN_DELAY": "2"}),
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        pid = daemon_pid(pidfile)
        assert pid is not None, "no pidfile"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = await one_request(port, "/readyz")
                if ready.status == 200:
                    break
            except ConnectError:
                pass
            assert time.monotonic() < deadline, logfile.read_text(errors="replace")
            await sleep(0.1)
        os.kill(pid, signal.SIGTERM)
        await sleep(0.5)
        during = [await one_request(port, "/readyz"), await one_request(port, "/livez")]
        deadline = time.monotonic() + 30
        while alive(pid):
            assert time.monotonic() < deadline, "the daemon did not stop"
            await sleep(0.05)
    finally:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)
        redis.kill()
    assert [(e.path, e.status) for e in during] == [("/readyz", 503), ("/livez", 200)]
    log = logfile.read_text(errors="replace")
    assert phases_in_order(log), log
    assert "Traceback" not in log
