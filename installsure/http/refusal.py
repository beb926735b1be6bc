"""Answers the server gives on its own, to requests the application never sees.

A request refused while it arrives (a declared body over the limit; later, a head that
does not parse, is too large or arrives too slowly) still gets what README promises of
every response: the error envelope, ``X-Request-ID``, the security headers, ``Date``
and ``X-Response-Time``, and one access-log line. Its connection is then closed.

The connection layer (``installsure.http._wire`` in the fast wire, the guard of the
stock one) builds these answers without importing the application: the site hands it
a :class:`WireHooks` with the few things only the application knows. Only public
Twisted API here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from attrs import frozen
from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.web import http
from twisted.web.resource import IResource

if TYPE_CHECKING:
    from installsure.http.deadlines import RequestDeadlines

#: How long a refused connection stays half-open so the client reads the answer.
LINGER_SECONDS = 2.0
_VERSIONS = frozenset({b"HTTP/1.0", b"HTTP/1.1"})


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


#: The ``Date`` header's value for now.
http_date = _DateCache.now


@frozen
class Refusal:
    """Why the server answers a request itself, and with what."""

    status: int
    #: The status line's reason phrase.
    reason: bytes
    #: The envelope's machine code.
    code: str
    message: str


#: A request twisted.web's parser refuses: a malformed request line or header line, a
#: header value with CR, LF or NUL, a bad Content-Length or chunked body.
BAD_REQUEST = Refusal(
    400, b"Bad Request", "BAD_REQUEST",
    "The request is not valid HTTP/1.1, so it was not read further.",
)


def head_too_large(max_size: int, max_headers: int) -> Refusal:
    """A head over the size or header-count limit, or a line longer than is read."""
    return Refusal(
        431, b"Request Header Fields Too Large", "HEADERS_TOO_LARGE",
        f"The request head is larger than the limit of {max_size} bytes or "
        f"{max_headers} header lines.",
    )


def payload_too_large(limit: int) -> Refusal:
    return Refusal(
        413, b"Payload Too Large", "PAYLOAD_TOO_LARGE",
        f"The request body is larger than the limit of {limit} bytes.",
    )


@frozen
class RefusedRequest:
    """What was known of a refused request, for its answer and its access-log line."""

    method: bytes
    path: bytes
    #: The request's HTTP version, when its request line was read.
    version: bytes | None
    #: The first value of the request-id header the client sent, if any.
    sent_request_id: bytes | None
    remote: str


@frozen
class RefusalRecord:
    """One refusal as sent: what :attr:`WireHooks.log_refusal` logs."""

    request: RefusedRequest
    refusal: Refusal
    request_id: str
    bytes_sent: int
    duration_ms: float


@frozen
class WireHooks:
    """What the connection layer needs from the application.

    The site builds it from the application resource; the fast wire's channel and
    request and the stock wire's guard read it, and import nothing of the application.
    """

    #: The largest request body for a path (without its query), in bytes.
    body_limit: Callable[[bytes], int]
    #: The name of the header carrying the request id, both ways.
    request_id_header: bytes
    #: The client's request id when it is acceptable, else a new one.
    request_id: Callable[[bytes | None], str]
    #: Headers every response carries (name, values).
    security_headers: Sequence[tuple[bytes, Sequence[bytes]]]
    #: The envelope: ``error_body(code, message, request_id)``.
    error_body: Callable[[str, str, str], bytes]
    #: Writes the access-log line of a refusal.
    log_refusal: Callable[[RefusalRecord], None]
    #: The resource that answers every method and every error itself, always later
    #: (``NOT_DONE_YET``): the fast wire calls its ``render`` without twisted.web's
    #: fallbacks.
    application: IResource | None = None
    #: How long a request may take to arrive (None: only the idle timeout applies).
    deadlines: RequestDeadlines | None = None
    #: Whether the route of ``(method, path)`` takes its body as a stream; then the
    #: application's ``render_streamed(request, stream)`` is dispatched when the head is
    #: in (see :mod:`installsure.http.incoming`). None: no route does.
    streamed: Callable[[bytes, bytes], bool] | None = None


def refusal_response(
    hooks: WireHooks, refusal: Refusal, request: RefusedRequest, started: float
) -> tuple[bytes, str, int]:
    """The bytes of the answer (head and envelope), the request id it carries and the
    size of its body. ``started`` is ``time.perf_counter()`` when the refusal began."""
    request_id = hooks.request_id(request.sent_request_id)
    body = hooks.error_body(refusal.code, refusal.message, request_id)
    version = request.version if request.version in _VERSIONS else b"HTTP/1.1"
    lines = [b"%s %d %s" % (version, refusal.status, refusal.reason)]
    for name, values in hooks.security_headers:
        lines.extend(name + b": " + value for value in values)
    lines += [
        hooks.request_id_header + b": " + request_id.encode("ascii"),
        b"Content-Type: application/json; charset=utf-8",
        b"Content-Length: %d" % len(body),
        b"Date: " + http_date(),
        b"Connection: close",
        b"X-Response-Time: %.2fms" % ((time.perf_counter() - started) * 1000),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body, request_id, len(body)


def send_and_close(
    transport: Any, data: bytes, call_later: Callable[..., IDelayedCall]
) -> IDelayedCall | None:
    """Write ``data`` and close the connection so that the client can read it.

    A TCP connection is half-closed (a full close with unread request bytes would reset
    it and lose the answer) and aborted ``LINGER_SECONDS`` later on ``call_later``'s
    clock unless the client closes first: the DelayedCall is returned for the caller to
    cancel when the connection goes. Other transports are closed at once (None).
    """
    transport.write(data)
    if ITCPTransport.providedBy(transport) and _half_close(transport):
        return call_later(LINGER_SECONDS, transport.abortConnection)
    transport.loseConnection()
    return None


def _half_close(transport: Any) -> bool:
    try:
        transport.loseWriteConnection()
    except Exception:  # e.g. TLS transports that cannot half-close
        return False
    return True


def refuse(
    hooks: WireHooks,
    refusal: Refusal,
    request: RefusedRequest,
    transport: Any,
    call_later: Callable[..., IDelayedCall],
) -> IDelayedCall | None:
    """Answer ``request`` with ``refusal``, close the connection (see
    :func:`send_and_close`, whose DelayedCall this returns) and log it."""
    started = time.perf_counter()
    data, request_id, size = refusal_response(hooks, refusal, request, started)
    linger = send_and_close(transport, data, call_later)
    hooks.log_refusal(RefusalRecord(
        request, refusal, request_id, size, (time.perf_counter() - started) * 1000
    ))
    return linger
