"""The twisted.web ``Site`` for the API: body limits while reading, no version leak.

:class:`ApiRequest` refuses an oversize body as soon as ``Content-Length`` (or the
running count of a chunked body) passes the limit, answering 413 at once instead of
buffering the rest. The site writes no access log of its own: the API resource logs
every request with richer fields.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet import tcp
from twisted.internet.interfaces import ITCPTransport
from twisted.python import failure
from twisted.web import http, resource, server
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource

from installsure import logs
from installsure.http.app import ApiResource, too_large
from installsure.http.context import sane_request_id
from installsure.http.errors import error_body

_LINGER_SECONDS = 2.0


class _DateCache:
    """The ``Date`` header changes once a second; format it once a second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = http.datetimeToString(now)  # type: ignore[no-untyped-call]
        return cls.value


class ApiRequest(server.Request):
    """A request that enforces the API body limit while the body arrives."""

    _limit: int | None = None
    _received = 0
    _rejected = False

    channel: Any

    def gotLength(self, length: int | None) -> None:
        site = getattr(self.channel, "site", None)
        if length != 0 and isinstance(site, ApiSite):
            path = getattr(self.channel, "_path", b"") or b""
            self._limit = site.body_limit(path.split(b"?", 1)[0])
            if length is not None and length > self._limit:
                self._reject()
                return
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        if self._limit is not None:
            self._received += len(data)
            if self._received > self._limit:
                self._reject()
                return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def write(self, data: bytes) -> None:
        super().write(data)  # type: ignore[no-untyped-call]
        # write(b"") sends only the head, which ApiChannel holds for the body; send it.
        flush = getattr(self.channel, "flush_head", None)
        if flush is not None:
            flush()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._rejected:
            return
        super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]

    def process(self) -> None:
        # server.Request.process, minus the "Server: TwistedWeb/<version>" header.
        self.site = self.channel.site
        self.responseHeaders.setRawHeaders(b"Date", [_DateCache.now()])
        self.prepath = []
        # Only mounted resources traverse by segments; the API resource is a leaf that
        # routes on the whole path, so most requests skip splitting and unquoting it.
        if getattr(self.site, "mounts", None):
            self.postpath = [unquote_to_bytes(p) for p in self.path[1:].split(b"/")]
        else:
            self.postpath = []
        try:
            resrc = self.site.getResourceFor(self)
            self.render(resrc)  # type: ignore[no-untyped-call]
        except BaseException:
            self.processingFailed(failure.Failure())  # type: ignore[no-untyped-call]

    def _reject(self) -> None:
        """Answer 413 now, close, and discard whatever else the client sends."""
        started = time.perf_counter()
        self._rejected = True
        channel = self.channel
        site: ApiSite = channel.site
        api = site.api
        limit = self._limit or 0
        raw_id = self.requestHeaders.getRawHeaders(api.settings.request_id_header.encode())
        request_id = (sane_request_id(raw_id[0]) if raw_id else None) or api.new_request_id()
        error = too_large(limit)
        body = error_body(error.code, error.message, request_id)
        lines = [b"HTTP/1.1 413 Payload Too Large"]
        for name, values in api.security_headers:
            lines.extend(name + b": " + v for v in values)
        lines += [
            api.settings.request_id_header.encode("ascii") + b": " + request_id.encode("ascii"),
            b"Content-Type: application/json; charset=utf-8",
            b"Content-Length: %d" % len(body),
            b"Date: " + _DateCache.now(),
            b"Connection: close",
            b"X-Response-Time: %.2fms" % ((time.perf_counter() - started) * 1000),
        ]
        transport: Any = channel.transport
        transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        # Half-close so the client reads the answer before we drop the connection;
        # a full close with unread data would reset it and lose the 413.
        channel.dataReceived = lambda _data: None
        if ITCPTransport.providedBy(transport) and _half_close(transport):
            from twisted.internet import reactor

            call = reactor.callLater(
                _LINGER_SECONDS, transport.abortConnection
            )
            channel.connectionLost = _cancel_then(call, channel.connectionLost)
        else:
            transport.loseConnection()
        path = getattr(channel, "_path", b"") or b""
        command = getattr(channel, "_command", b"") or b""
        logs.log_access(
            method=command.decode("latin-1"),
            path=path.decode("latin-1"),
            route=None,
            status=413,
            duration_ms=(time.perf_counter() - started) * 1000,
            bytes_sent=len(body),
            request_id=request_id,
            remote=str(getattr(self.getClientAddress(), "host", "-")),  # type: ignore[no-untyped-call]
        )


def _half_close(transport: Any) -> bool:
    try:
        transport.loseWriteConnection()
    except Exception:  # e.g. TLS transports that cannot half-close
        return False
    return True


def _cancel_then(call: Any, original: Any) -> Any:
    def connectionLost(reason: Any) -> None:
        if call.active():
            call.cancel()
        original(reason)

    return connectionLost


class ApiChannel(http.HTTPChannel):
    """HTTP/1.1 channel that sends a response's head and body in one ``send``.

    twisted.web hands the transport ~50 small pieces per response and always waits for
    the socket to be writable, which costs two epoll updates and a loop turn per
    request. Here the status line and headers are joined once, held until the first
    body bytes (or the end of :meth:`ApiRequest.write`), and sent straight to the
    socket when nothing is queued before them; whatever the kernel does not take goes
    through the transport as usual, so back-pressure and ordering are unchanged.
    """

    _pending_head: bytes | None = None
    _host: Any = None

    def getHost(self) -> Any:
        # Asked by every Request; the local address of a connection never changes, so
        # one getsockname() per connection instead of one per request.
        if self._host is None:
            self._host = super().getHost()  # type: ignore[no-untyped-call]
        return self._host

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if type(headers) is not Headers:
            self.flush_head()
            super().writeHeaders(version, code, reason, headers)  # type: ignore[no-untyped-call]
            return
        parts = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self.flush_head()
        self._pending_head = b"".join(parts)

    def write(self, data: bytes) -> None:
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            data = head + data
        self._send(data)

    def writeSequence(self, iovec: list[bytes]) -> None:
        self.flush_head()
        super().writeSequence(iovec)  # type: ignore[no-untyped-call]

    def flush_head(self) -> None:
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            self._send(head)

    def _send(self, data: bytes) -> None:
        transport: Any = self.transport
        sock = getattr(transport, "socket", None)
        if (
            sock is None
            or type(transport) is not tcp.Server
            or transport.dataBuffer
            or transport._tempDataBuffer
            or transport.disconnecting
            or not transport.connected
        ):
            transport.write(data)
            return
        try:
            sent = sock.send(data)
        except OSError:
            # Let the transport meet the error (or the full buffer) its own way.
            sent = 0
        if sent < len(data):
            transport.write(data[sent:])  # type: ignore[no-untyped-call]

    def loseConnection(self) -> None:
        self.flush_head()
        super().loseConnection()  # type: ignore[no-untyped-call]


class ApiSite(server.Site):
    """Serves an :class:`ApiResource`; ``mounts`` put other resources (e.g. ``/ws``) beside it.

    Speaks HTTP/1.1 only (no HTTP/2 negotiation), through :class:`ApiChannel`.
    """

    protocol = ApiChannel  # type: ignore[assignment]
    requestFactory = ApiRequest
    displayTracebacks = False

    def __init__(
        self, api: ApiResource, mounts: Mapping[bytes, IResource] | None = None, **kw: Any
    ) -> None:
        super().__init__(api, **kw)  # type: ignore[no-untyped-call]
        self.api = api
        self.mounts = dict(mounts or {})

    def body_limit(self, path: bytes) -> int:
        return self.api.body_limit(path)

    def log(self, request: Any) -> None:
        """The API resource logs every request itself."""

    def getResourceFor(self, request: Any) -> Any:
        request.site = self
        request.sitepath = []
        if self.mounts and request.postpath:
            child = self.mounts.get(request.postpath[0])
            if child is not None:
                request.prepath.append(request.postpath.pop(0))
                return resource.getChildForRequest(child, request)  # type: ignore[no-untyped-call]
        return self.api
