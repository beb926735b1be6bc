"""The fallback load client, for machines without wrk: asyncio keep-alive connections.

    python bench/harness/pyload.py HOST PORT PATH DURATION CONNECTIONS [HEADER...]

(each HEADER as ``Name: value``, sent with every request)

Run by ``harness.load`` as a child process, like wrk, so it is pinned, timed and
stopped the same way. Prints one line ``INSTALLSURE_BENCH {json}`` with the fields of
wrk's report script. It saturates at a few thousand requests per second on one core:
its figures are lower bounds, good for smoke runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time


class Tally:
    """What the connections saw, in the units of wrk's summary."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


async def load(
    host: str, port: int, path: str, duration: float, connections: int, *,
    headers: tuple[str, ...] = (),
) -> dict[str, float]:
    extra = "".join(f"{header}\r\n" for header in headers)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n{extra}"
               "\r\n").encode()
    tally = Tally()
    deadline = time.monotonic() + duration

    async def one_client() -> None:
        # Like wrk: a connection that breaks or is closed is replaced until the end.
        while time.monotonic() < deadline:
            if not await one_connection():
                await asyncio.sleep(0.05)  # do not spin on a refusing server

    async def one_connection() -> bool:
        """Send requests on one connection; False when it failed."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError):
            tally.errors["connect"] += 1
            return False
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter_ns()
                writer.write(request)
                status, size, close = await read_response(reader)
                tally.latencies_ns.append(time.perf_counter_ns() - started)
                tally.bytes += size
                if status >= 400:
                    tally.errors["status"] += 1
                if close:
                    break
        except TimeoutError:
            tally.errors["timeout"] += 1
            return False
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.errors["read"] += 1
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return True

    started = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(connections)))
    elapsed = time.monotonic() - started
    return report(tally, elapsed)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """Read one response: (status, bytes read, whether the server closes after it)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    size = len(head)
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
            size_line = await reader.readuntil(b"\r\n")
            chunk = int(size_line.split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += len(size_line) + chunk + 2
            if chunk == 0:
                break
    else:
        await reader.readexactly(length)
        size += length
    return status, size, close


def report(tally: Tally, elapsed: float) -> dict[str, float]:
    latencies = sorted(tally.latencies_ns)

    def pct_us(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] / 1000

    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "bytes": tally.bytes,
        **{f"errors_{kind}": n for kind, n in tally.errors.items()},
        "p50_us": pct_us(50),
        "p90_us": pct_us(90),
        "p99_us": pct_us(99),
        "max_us": latencies[-1] / 1000 if latencies else 0.0,
        "mean_us": statistics.fmean(latencies) / 1000 if latencies else 0.0,
    }


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, path, duration, connections, *headers = argv
    figures = asyncio.run(load(host, int(port), path, float(duration), int(connections),
                               headers=tuple(headers)))
    print("INSTALLSURE_BENCH " + json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
