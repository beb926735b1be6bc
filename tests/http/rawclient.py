"""A blocking HTTP/1.1 client on one kept-alive socket, for tests that must see exactly
what the server sends and when it closes (run it off the reactor thread)."""

from __future__ import annotations

import socket
import time

from attrs import frozen


@frozen
class Answer:
    status: int
    #: Header names lower-cased, first value of each.
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class RawClient:
    """One connection; :meth:`send` bytes, read each :meth:`answer`, see :meth:`closed`."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, path: str) -> Answer:
        self.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        return self.answer()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def answer(self) -> Answer:
        """The next response (raises ConnectionError if the server closes first)."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                raise ConnectionError(f"closed before a response; got {self._buffer!r}")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            if not self._fill():
                raise ConnectionError("closed inside a response body")
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Answer(int(lines[0].split(" ", 2)[1]), headers, body)

    def closed(self, timeout: float = 5.0) -> float | None:
        """Seconds until the server closed the connection (nothing else arriving), or
        None if it was still open after ``timeout``."""
        started = time.monotonic()
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return time.monotonic() - started
                self._buffer += data
        except TimeoutError:
            return None
        except ConnectionResetError:
            return time.monotonic() - started

    def close(self) -> None:
        self.sock.close()
