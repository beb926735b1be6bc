"""The API's twisted.web ``Request``: body limits while reading, one-step responses.

:class:`ApiRequest` refuses an oversize body as soon as ``Content-Length`` (or the
running count of a chunked body) passes the limit, answering 413 at once (through its
channel's :meth:`~installsure.http._wire.channel.ApiChannel.refuse`) instead of
buffering the rest; it sends no ``Server`` version; and :meth:`ApiRequest.respond`
sends a complete response in one step. The body limit and the application resource
come from the site's :class:`~installsure.http.refusal.WireHooks`.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.python import failure
from twisted.web import server
from twisted.web.http import NO_BODY_CODES, parse_qs
from twisted.web.http_headers import Headers

from installsure._compat import raw_headers, site_parses_post_forms
from installsure.http.incoming import BodyStream, open_stream
from installsure.http.refusal import WireHooks, http_date, payload_too_large


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
        self._parsePOSTFormSubmission = site_parses_post_forms(channel.site)
        self._adapterCache = {}

    def gotLength(self, length: int | None) -> None:
        if length == 0:
            # What server.Request.gotLength(0) stores, as long as ApiSite has no
            # getContentFile of its own (a test holds it to server.Site's): an empty
            # in-memory file. Most requests have no body; this skips three calls.
            self.content = BytesIO()
            return
        # None (chunked) or a length: the body limit applies, when the channel can
        # refuse a request while reading it.
        hooks: WireHooks | None = getattr(self.channel, "wire_hooks", None)
        if hooks is not None:
            path = getattr(self.channel, "_path", b"") or b""
            self._limit = hooks.body_limit(path.split(b"?", 1)[0])
            if length is not None and length > self._limit:
                self._reject()
                return
            # A streamed route (uploads) takes the body as it arrives.
            stream = open_stream(self, hooks)
            if stream is not None:
                self.content = stream
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
        headers = raw_headers(self.responseHeaders)
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
            or headers is None
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
        if isinstance(self.content, BodyStream):
            self.content.end()  # dispatched when its head arrived (open_stream)
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
        stored = raw_headers(self.responseHeaders)
        if stored is not None:  # as setRawHeaders stores it, without re-checking a constant
            stored[b"Date"] = [http_date()]
        else:
            self.responseHeaders.setRawHeaders(b"Date", [http_date()])
        self.prepath = []
        # Only mounted resources traverse by segments; the API resource is a leaf that
        # routes on the whole path, so most requests skip splitting and unquoting it.
        if getattr(self.site, "mounts", None):
            self.postpath = [unquote_to_bytes(p) for p in self.path[1:].split(b"/")]
        else:
            self.postpath = []
        try:
            resrc = self.site.getResourceFor(self)
            hooks: WireHooks | None = getattr(self.site, "wire_hooks", None)
            application = hooks.application if hooks is not None else None
            if application is not None and resrc is application:
                # It answers every method and error itself, always later (NOT_DONE_YET):
                # server.Request.render's fallbacks never apply.
                application.render(self)  # type: ignore[no-untyped-call]
            else:
                # Kept before rendering: a takeover may leave the request without
                # its channel (self.channel is None afterwards).
                channel = self.channel
                self.render(resrc)  # type: ignore[no-untyped-call]
                taken_over = getattr(channel, "taken_over", None)
                if channel.transport is None and taken_over is not None:
                    # A WebSocket upgrade (autobahn's WebSocketResource, for one) took
                    # the connection over: the channel never hears of it again.
                    taken_over()
        except BaseException:
            self.processingFailed(failure.Failure())  # type: ignore[no-untyped-call]

    def _reject(self) -> None:
        """Answer 413 now and close; whatever else the client sends is discarded."""
        self._rejected = True
        self.channel.refuse(payload_too_large(self._limit or 0))
