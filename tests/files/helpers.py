"""Bodies and raw exchanges for the upload tests."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterable, Sequence

BOUNDARY = "----installsure-test-boundary-7d2f"
# Fixed noise, not os.urandom: parametrized tests show these bytes in their ids, and
# pytest-xdist refuses to run when its workers collect different ids.
_NOISE = random.Random(20261204)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + _NOISE.randbytes(200)
PDF = b"%PDF-1.7\n" + _NOISE.randbytes(300)
IFC = b"ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION(('ViewDefinition'),'2;1');\nENDSEC;\n"

Part = tuple[str, str | None, bytes]


def part_head(name: str, filename: str | None, *, extended: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    if extended is not None:
        disposition += f"; filename*=UTF-8''{extended}"
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename is not None:
        head += "Content-Type: application/octet-stream\r\n"
    return (head + "\r\n").encode("utf-8")


def multipart(parts: Sequence[Part]) -> bytes:
    """A multipart/form-data body of ``(name, filename or None, content)`` parts."""
    body = b"".join(part_head(n, f) + data + b"\r\n" for n, f, data in parts)
    return body + f"--{BOUNDARY}--\r\n".encode()


CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def upload_head(port: int, headers: dict[str, str], length: int | None,
                target: str = "/api/files/upload") -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"Content-Type: {CONTENT_TYPE}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k != "X-User"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_until_answered(port: int, head: bytes, chunks: Iterable[bytes],
                        timeout: float = 30.0) -> tuple[bytes, int]:
    """Send ``head`` then ``chunks`` while watching for an answer; the answer (read to
    the close) and how many body bytes had been sent when its first bytes arrived."""
    sent = 0
    answer = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                if time.monotonic() > deadline:
                    raise TimeoutError("no answer in time")
                with contextlib.suppress(BlockingIOError):
                    answer += sock.recv(65536)
                if answer:
                    break
                try:
                    n = sock.send(view)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:
                    break
                sent += n
                view = view[n:]
            if answer:
                break
        sock.settimeout(10)
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            answer += data
    return answer, sent


def abandon_upload(port: int, head: bytes, body_prefix: bytes) -> None:
    """Send the head and part of the body, then close the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body_prefix)
        time.sleep(0.3)
