"""The API's twisted.web ``Request``: body limits while reading, one-step responses.

:class:`ApiRequest` refuses an oversize body as soon as ``Content-Length`` (or the
running count of a chunked body) passes the limit, answering 413 at once instead of
buffering the rest; it sends no ``Server`` version; and :meth:`ApiRequest.respond`
sends a complete response in one step.
"""

from __future__ import annotations

import time
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import ITCPTransport
from twisted.python import failure
from twisted.web import http, server
from twisted.web.http import NO_BODY_CODES, parse_qs
from twisted.web.http_headers import Headers

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

    def __init__(self, channel: Any, *args: Any, **kw: Any) -> None:
        if kw or len(args) > 1:
            super().__init__(channel, *args, **kw)  # type: ignore[no-untyped-call]
            return
        # server.Request.__init__ and http.Request.__init__ in one step (they run for
        # every request, through a deprecation-checking module proxy and a dozen
        # calls); a test holds the two to the same attributes.
        self.notifications = []
        self.channel = channel
        self.client = channel.getPeer()
        self.host = channel.getHost()
        self.requestHeaders = Headers()
        self.received_cookies = {}
        self.responseHeaders = Headers()
        self.cookies = []
        self.transport = channel.transport
        self.queued = args[0] if args else False
        self._parsePOSTFormSubmission = channel.site._parsePOSTFormSubmission
        self._adapterCache = {}

    def gotLength(self, length: int | None) -> None:
        if length == 0:
            # What server.Request.gotLength(0) stores, as long as ApiSite has no
            # getContentFile of its own (a test holds it to server.Site's): an empty
            # in-memory file. Most requests have no body; this skips three calls.
            self.content = BytesIO()
            return
        # None (chunked) or a length: the body limit applies.
        body_limit = getattr(getattr(self.channel, "site", None), "body_limit", None)
        if body_limit is not None:
            path = getattr(self.channel, "_path", b"") or b""
            self._limit = body_limit(path.split(b"?", 1)[0])
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

    def respond(self, body: bytes) -> None:
        """``write(body)`` then ``finish()``, for a response whose headers are all set.

        The same bytes on the wire and the same bookkeeping, in one step and one
        ``send``. twisted.web's first ``write`` re-derives what the API resource has
        already decided (chunking, a default ``Content-Type``, HEAD, codes without a
        body) through a dozen header lookups; here only that the response carries a
        ``Content-Length`` (or may have no body) is checked. Anything unusual (an
        encoder, cookies, ETag or Last-Modified, output already begun, a lost
        connection, another kind of channel) takes twisted.web's own path.
        """
        channel = self.channel
        headers = self.responseHeaders._rawHeaders
        code = self.code
        if (
            self.startedWriting
            or self.finished
            or self._disconnected
            or self._encoder is not None
            or self.cookies
            or self.etag is not None
            or self.lastModified is not None
            or self.queued
            or getattr(channel, "write_response", None) is None
            or type(headers) is not dict
            or (b"Content-Length" not in headers and code not in NO_BODY_CODES)
            or (b"Content-Type" not in headers and code not in NO_BODY_CODES)
        ):
            if body:
                self.write(body)
            self.finish()  # type: ignore[no-untyped-call]
            return
        self.startedWriting = 1
        if self.method == b"HEAD" or code in NO_BODY_CODES:
            body = b""
        self.sentLength = len(body)
        channel.write_response(
            self.clientproto, b"%d" % code, self.code_message, self.responseHeaders, body
        )
        # What finish() does once the last bytes are written (never chunked here).
        factory = getattr(channel, "factory", None)
        if factory is not None:
            factory.log(self)
        self.finished = 1
        self._cleanup()  # type: ignore[no-untyped-call]

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._rejected:
            return
        if command == b"POST":  # twisted.web may parse a form body into args
            super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]
            return
        # http.Request.requestReceived for the other methods, whose bodies it leaves
        # alone: the same attributes, without its form-body checks and header lookups.
        if self.content is not None:
            self.content.seek(0, 0)
        self.method, self.uri, self.clientproto = command, path, version
        self.path, question_mark, query = path.partition(b"?")
        self.args = parse_qs(query, 1) if question_mark else {}  # type: ignore[no-untyped-call]
        self.process()

    def process(self) -> None:
        # server.Request.process, minus the "Server: TwistedWeb/<version>" header.
        self.site = self.channel.site
        stored = self.responseHeaders._rawHeaders
        if type(stored) is dict:  # as setRawHeaders stores it, without re-checking a constant
            stored[b"Date"] = [_DateCache.now()]
        else:
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
            if type(resrc) is ApiResource:
                # It answers every method and error itself, always later (NOT_DONE_YET):
                # server.Request.render's fallbacks never apply.
                resrc.render(self)
            else:
                self.render(resrc)  # type: ignore[no-untyped-call]
        except BaseException:
            self.processingFailed(failure.Failure())  # type: ignore[no-untyped-call]

    def _reject(self) -> None:
        """Answer 413 now, close, and discard whatever else the client sends."""
        started = time.perf_counter()
        self._rejected = True
        channel = self.channel
        api = channel.site.api
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
