"""What the fast wire's channel does while the server drains on shutdown.

The :class:`~installsure.http.connections.ConnectionTracker` calls these (with ``cut``
and ``taken_over``, which live in :class:`~installsure.http._wire.channel.ApiChannel`
beside the refusals they use): from :meth:`DrainingChannel.begin_drain` on, every
response says ``Connection: close`` and ends its connection, without cutting a request
that has been read, is being read or was sent behind the one in progress.
"""

from __future__ import annotations

from typing import Any

from installsure.http._wire.idle import IdleTimeoutChannel
from installsure.http.connections import socket_has_bytes


class DrainingChannel(IdleTimeoutChannel):
    """The drain side of the fast wire's channel (see the module docstring)."""

    #: Set by ApiChannel once it has answered a request itself and is closing.
    _refused = False
    _draining = False

    def begin_drain(self) -> None:
        """Every response from now on says ``Connection: close`` and ends the connection.

        The request being handled gets it too, unless its answer has begun or its client
        has sent more behind it (read ahead into ``_dataBuffer``): closing after it would
        cut the next request, so that one is answered with ``Connection: close`` instead.
        A request whose head is still arriving gets it when the head is in
        (:meth:`checkPersistence`).
        """
        self._draining = True
        if not self.requests or self._dataBuffer:
            return
        request = self.requests[-1]
        # content is set once the head is in, when persistence has been decided.
        if request.content is not None and not request.startedWriting:
            self.persistent = False
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        if self._draining:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return bool(super().checkPersistence(request, version))  # type: ignore[no-untyped-call]

    @staticmethod
    def _say_close(headers: Any, stored: dict[bytes, list[bytes]] | None) -> None:
        # A response whose headers were replaced after the request's head was read (a
        # 500 after a failed write) must still say that the connection closes.
        if stored is not None:
            stored[b"Connection"] = [b"close"]
        else:
            headers.setRawHeaders(b"Connection", [b"close"])

    def is_idle(self) -> bool:
        return bool(
            not self.requests
            and self.line_mode
            and not self._buffer
            and not self._dataBuffer
            and not self._refused
        )

    def last_active(self) -> float:
        # The idle check's record of the last read or finished request.
        return self._idle_since if self._idle_clock is not None else 0.0

    def bytes_waiting(self) -> bool:
        return socket_has_bytes(self.transport)

    def close(self) -> None:
        self.loseConnection()  # type: ignore[no-untyped-call]
