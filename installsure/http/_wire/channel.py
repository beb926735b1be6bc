"""The HTTP/1.1 connection: a one-pass parser for simple requests, one ``send`` per answer.

:class:`ApiChannel` is twisted.web's ``HTTPChannel`` with four shortcuts on the hot
path, each falling back to the inherited code whenever its case is not the plain one:

* **reading**: a read that holds exactly one complete, body-less request head (the usual
  GET, HEAD or DELETE) is parsed in one pass by
  :func:`~installsure.http._wire.head.parse_simple_head`
  and handed to the same request hooks the line parser would call; every other read
  goes through ``LineReceiver`` as before.
* **writing**: the status line and headers are held and sent together with the first
  body bytes (or, for :meth:`~installsure.http._wire.request.ApiRequest.respond`, with the
  whole body at once), straight to the socket when nothing is queued before them.
* **idle timeout**: one DelayedCall per connection that requests do not touch (see
  "idle timeout" below).
* **request lifecycle**: for such a request, the end-of-head steps of
  ``allContentReceived`` are taken inline, and ``requestDone`` has a short path for the
  only request of a connection that stays open with nothing read ahead.

Where these replace twisted.web code, tests/http/test_channel.py compares the result
with what twisted.web's own code makes of the same bytes.
"""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import INonQueuedRequestFactory

from installsure._compat import raw_headers, tcp_write_pending
from installsure.http._wire.draining import DrainingChannel
from installsure.http._wire.head import canonical_name, parse_simple_head
from installsure.http.deadlines import Progress, ReadDeadline, Reading
from installsure.http.refusal import (
    BAD_REQUEST,
    Refusal,
    RefusedRequest,
    WireHooks,
    head_too_large,
    refuse,
    send_and_close,
)

_ONE_VALUE_EACH = {1}
_first = itemgetter(0)


@lru_cache(maxsize=16)
def _non_queued(factory: object) -> bool:
    """Whether HTTPChannel would build requests from ``factory`` without a queue position."""
    return bool(INonQueuedRequestFactory.providedBy(factory))


def _response_head(
    version: bytes, code: bytes, reason: bytes, stored: dict[bytes, list[bytes]]
) -> bytes:
    """Status line and header lines of a response, up to and including the blank line."""
    if set(map(len, stored.values())) == _ONE_VALUE_EACH:
        # The usual case, one value per header, joined without a Python-level loop.
        lines = b"\r\n".join(
            map(b": ".join, zip(stored, map(_first, stored.values()), strict=True))
        )
    else:
        lines = b"\r\n".join(
            [name + b": " + value for name, values in stored.items() for value in values]
        )
    return b"".join(
        (version, b" ", code, b" ", reason, b"\r\n", lines, b"\r\n\r\n" if lines else b"\r\n")
    )


class ApiChannel(DrainingChannel):
    """HTTP/1.1 channel that parses simple requests in one pass and answers in one ``send``.

    Reading: see :meth:`dataReceived`.

    Writing: twisted.web hands the transport ~50 small pieces per response and always
    waits for the socket to be writable, which costs two epoll updates and a loop turn
    per request. Here the status line and headers are joined once, held until the
    first body bytes (or the end of :meth:`ApiRequest.write`), and sent straight to the
    socket when nothing is queued before them; whatever the kernel does not take goes
    through the transport as usual, so back-pressure and ordering are unchanged.
    """

    _pending_head: bytes | None = None
    _host: Any = None
    _peer: Any = None

    # -- reading ----------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Serve a read holding exactly one simple request without the line parser.

        Only between requests (nothing buffered, nothing in progress, connection still
        persistent); the request then goes through the very hooks the line parser
        would call, in the same order, so the request object, timeouts, persistence
        and body limits behave the same. Anything else takes the inherited path.
        """
        if self._refused:
            return  # an answer is out and the connection closing: discard the rest
        if (
            self.line_mode
            and not self._buffer
            and not self.requests
            and self.persistent
            and not self._busyReceiving
            and not self.paused
        ):
            head = parse_simple_head(
                data, max_size=self.totalHeadersSize, max_headers=self.maxHeaders
            )
            if head is not None:
                self.resetTimeout()
                self._serve_simple(*head)
                return
        super().dataReceived(data)  # type: ignore[no-untyped-call]
        self._watch_reading()

    def _serve_simple(
        self, method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        # HTTPChannel.lineReceived's steps for the request line and each header line ...
        factory: Any = self.requestFactory
        request = factory(self) if _non_queued(factory) else factory(self, len(self.requests))
        self.requests.append(request)
        stored = raw_headers(request.requestHeaders)
        if stored is None or stored:
            # Some other kind of request or headers: every step the inherited way.
            self._command, self._path, self._version = method, target, version
            add_header = request.requestHeaders.addRawHeader
            for name, value in headers:
                add_header(name, value)
            self.allHeadersReceived()  # type: ignore[no-untyped-call]
            self.allContentReceived()  # type: ignore[no-untyped-call]
            return
        # Headers.addRawHeader, minus what the parser has already ruled out (names that
        # are not tokens, line breaks in values).
        for name, value in headers:
            key = canonical_name(name)
            values = stored.get(key)
            if values is None:
                stored[key] = [value]
            else:
                values.append(value)
        # ... HTTPChannel.allHeadersReceived's, for a request without a body or Expect:
        # header lookups only for headers that are there ...
        if b"Cookie" in stored:
            request.parseCookies()
        if version != b"HTTP/1.1" or b"Connection" in stored or self._draining:
            self.persistent = self.checkPersistence(request, version)
        request.gotLength(0)
        # ... and HTTPChannel.allContentReceived's for the empty line that ends the head.
        # The line parser never ran, so its header counters and first-line flag are
        # still as the previous request's reset left them, and the request line needs
        # no parking in _command/_path/_version.
        self.length = 0
        self._transferDecoder = None
        timeout = self.timeOut
        if timeout:
            # setTimeout(None) of this class: the idle check is off until requestDone.
            self._savedTimeOut = timeout
            self.timeOut = None
        self._handlingRequest = True
        self.line_mode = 0  # setRawMode(): bytes read meanwhile wait in _dataBuffer
        request.requestReceived(method, target, version)

    def requestDone(self, request: Any) -> None:
        """HTTPChannel.requestDone, in fewer steps for the usual case.

        The usual case: the only request in flight is done, the connection stays open
        and nothing was read ahead. The same steps as the inherited method, minus the
        request comparison through ``Request.__eq__`` (identity here) and the join of an
        empty read-ahead buffer; anything else goes through the inherited method.
        """
        if self._pending_head is not None:
            # A response without a body, finished by a Request other than ApiRequest
            # (whose write sends a held head at once): its head goes out now.
            self.flush_head()
        self._answered += 1
        requests = self.requests
        if (
            not self.persistent
            or self._dataBuffer
            or len(requests) != 1
            or requests[0] is not request
        ):
            super().requestDone(request)  # type: ignore[no-untyped-call]
            # Bytes read ahead have been parsed: a request may be part read now.
            self._watch_reading()
            return
        del requests[0]
        if not self._waitingForTransport:
            self._networkProducer.resumeProducing()
        self._handlingRequest = False
        saved = self._savedTimeOut
        if saved:
            if saved == self._idle_period and self._idle_call is not None:
                # setTimeout(saved) when its check is already scheduled for that period.
                self.timeOut = saved
                self._idle_since = self._idle_clock()
            else:
                self.setTimeout(saved)
        self.line_mode = 1  # setLineMode() with nothing read ahead

    # -- draining on shutdown: the rest is in DrainingChannel ---------------------------

    def cut(self, refusal: Refusal) -> None:
        if self._refused or self.transport is None:
            return
        if self._reading_progress() is not None:
            self.refuse(refusal)
        else:
            self.loseConnection()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def taken_over(self) -> None:
        """A WebSocket upgrade took the transport (``transport`` is None now): this
        channel serves no more; stop its clocks and leave the tracker."""
        if self._deadline is not None:
            self._deadline.stop()
        for call in (self._idle_call, self._linger):
            if call is not None and call.active():
                call.cancel()
        self._idle_call = self._linger = None
        self.timeOut = None
        connections = getattr(getattr(self, "site", None), "connections", None)
        if connections is not None:
            connections.upgraded(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._deadline is not None:
            self._deadline.stop()
        for call in (self._idle_call, self._linger):
            if call is not None and call.active():
                call.cancel()
        self._idle_call = self._linger = None
        connections = getattr(getattr(self, "site", None), "connections", None)
        if connections is not None:
            connections.discard(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def getHost(self) -> Any:
        # Asked by every Request; the local address of a connection never changes, so
        # one getsockname() per connection instead of one per request.
        if self._host is None:
            self._host = super().getHost()  # type: ignore[no-untyped-call]
        return self._host

    def getPeer(self) -> Any:
        # Likewise the remote address (an attrs object built anew on every call).
        if self._peer is None:
            self._peer = super().getPeer()  # type: ignore[no-untyped-call]
        return self._peer

    # -- deadlines for a request being read (installsure.http.deadlines) ------------------

    _deadline: ReadDeadline | None = None
    #: Requests answered on this connection: tells one request's clock from the next.
    _answered = 0

    def _reading_progress(self) -> Progress:
        """What of a request this connection is waiting for, if anything."""
        if self._refused or self._handlingRequest:
            return None
        if self.line_mode:
            # A request line begun (in the line buffer) or one whose headers are coming.
            if self.requests or self._buffer:
                return Reading.HEAD, 0, self._answered
            return None
        if self.requests:
            content = self.requests[-1].content
            return Reading.BODY, content.tell() if content is not None else 0, self._answered
        return None

    def _watch_reading(self) -> None:
        """After a read that may have left a request part read: mind its deadline.

        Only requests that arrive over several reads get here (the one-pass path
        serves the others), and the clock is made for the first of them."""
        deadline = self._deadline
        if deadline is None:
            hooks = self.wire_hooks
            if hooks is None or hooks.deadlines is None or self._reading_progress() is None:
                return
            deadline = self._deadline = ReadDeadline(
                hooks.deadlines, self.callLater, self._reading_progress, self._too_slow
            )
        deadline.observe()

    def _too_slow(self, reading: Reading) -> None:
        hooks = self.wire_hooks
        if hooks is not None and hooks.deadlines is not None:
            self.refuse(hooks.deadlines.refusal(reading))

    # -- refusals ---------------------------------------------------------------------

    _refused = False
    _linger: Any = None

    @property
    def wire_hooks(self) -> WireHooks | None:
        """What the application handed the site for answers it does not give itself."""
        return getattr(getattr(self, "site", None), "wire_hooks", None)

    def refuse(self, refusal: Refusal) -> None:
        """Answer the request being read with ``refusal`` (envelope, request id, security
        headers, access-log line) and close; whatever the client sends next is dropped."""
        if self._refused:
            return
        self._refused = True
        # Lines read with the refused one are not parsed: LineReceiver goes on with its
        # buffer while the connection is only half-closed.
        self.clearLineBuffer()  # type: ignore[no-untyped-call]
        hooks = self.wire_hooks
        if hooks is None:  # not served by an ApiSite: an answer without an envelope
            self.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 %d %s\r\n\r\n" % (refusal.status, refusal.reason)
            )
            self.loseConnection()
            return
        sent = None
        if self.requests:
            values = self.requests[-1].requestHeaders.getRawHeaders(hooks.request_id_header)
            sent = values[0] if values else None
        # The request line is parked in _command, _path and _version while the head and
        # body are read (absent before the request line is complete).
        refused = RefusedRequest(
            method=getattr(self, "_command", b""),
            path=getattr(self, "_path", b""),
            version=getattr(self, "_version", None),
            sent_request_id=sent,
            remote=str(getattr(self.getPeer(), "host", "-")),
        )
        self._linger = refuse(hooks, refusal, refused, self.transport, self.callLater)

    def close_after_answer(self) -> None:
        """The answer to a request whose body is still arriving has gone out (an upload
        refused part-way): drop whatever else the client sends and close as after a
        refusal (see :mod:`installsure.http.incoming`)."""
        if self._refused:
            return
        self._refused = True
        self.clearLineBuffer()  # type: ignore[no-untyped-call]
        self._linger = send_and_close(self.transport, b"", self.callLater)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Every refusal of twisted.web's parser comes here: answer it as the API does.
        # The head's counters tell a head over its limits from a malformed one.
        if (
            self._receivedHeaderSize > self.totalHeadersSize
            or self._receivedHeaderCount > self.maxHeaders
        ):
            self.refuse(head_too_large(self.totalHeadersSize, self.maxHeaders))
        else:
            self.refuse(BAD_REQUEST)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line longer than is read (LineReceiver.MAX_LENGTH): LineReceiver closes
        without a word; answer 431."""
        self.refuse(head_too_large(self.totalHeadersSize, self.maxHeaders))

    # -- writing ----------------------------------------------------------------------

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        self.flush_head()
        stored = raw_headers(headers) if type(headers) is Headers else None
        if self._draining and not self.persistent:
            self._say_close(headers, stored)
        if stored is None:
            super().writeHeaders(version, code, reason, headers)  # type: ignore[no-untyped-call]
            return
        self._pending_head = _response_head(version, code, reason, stored)

    def write(self, data: bytes) -> None:
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            data = head + data
        self._send(data)

    def write_response(
        self, version: bytes, code: bytes, reason: bytes, headers: Headers, body: bytes
    ) -> None:
        """A whole response: its head and ``body`` in one ``send``."""
        stored = raw_headers(headers) if type(headers) is Headers else None
        if stored is None or self._pending_head is not None:
            self.writeHeaders(version, code, reason, headers)
            self.write(body)
            return
        if self._draining and not self.persistent:
            self._say_close(headers, stored)
        self._send(_response_head(version, code, reason, stored) + body)

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
            or tcp_write_pending(transport)
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
