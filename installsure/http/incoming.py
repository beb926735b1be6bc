"""Request bodies handed to the application while they arrive (routes with ``streamed``).

twisted.web reads a whole body (into memory, or a temporary file past 100 kB) before the
application sees the request. For a route declared ``streamed=True`` (uploads) the
request instead gets a :class:`BodyStream` as its ``content`` when its head is in: the
application is dispatched at once, and each chunk twisted.web writes into ``content``
goes straight to the consumer the handler attaches, so nothing buffers the body and a
limit can be enforced as soon as it is crossed.

* The stream is the file-like object twisted.web expects of ``content`` (``write``,
  ``tell``, ``seek``, ``read``, ``close``); ``tell`` counts the bytes received, which the
  body deadline (:mod:`installsure.http.deadlines`) reads.
* Back-pressure: the consumer calls :meth:`BodyStream.pause`/``resume``, which stop and
  start reading the connection; bytes that arrive before a consumer is attached wait
  in a small backlog, and reading stops while it is full.
* An answer given before the body has arrived (413 part-way through) goes out like any
  other, with ``Connection: close``; then :meth:`BodyStream.answered_early` has the
  connection drop whatever else the client sends and close after a short linger, as
  the early refusals of :mod:`installsure.http.refusal` do.
* The consumer is never called back from inside its own calls (a failure it reports
  while given data is delivered on a later turn of the reactor), so an answer is never
  written while twisted.web is in the middle of parsing.

Both wires make these streams: the fast wire's ``ApiRequest`` and the stock wire's
:class:`StreamingRequest` (``twisted.web.server.Request`` with three methods
overridden, public names only, plus the request line :mod:`installsure._compat`
reads while the head is parsed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import parse_qs

from installsure._compat import request_line_being_read
from installsure.http.refusal import WireHooks, http_date

#: Bytes kept while no consumer is attached (the handler still authenticating); past
#: this, reading the connection pauses until the consumer catches up.
BACKLOG_LIMIT = 1024 * 1024
#: Chunk size when a body that twisted.web did buffer is replayed (see from_content).
_REPLAY_CHUNK = 1024 * 1024


class BodyConsumer(Protocol):
    """What a handler attaches to a :class:`BodyStream`."""

    def data_received(self, data: bytes) -> None:
        """The next bytes of the body."""

    def body_ended(self) -> None:
        """The body is complete."""

    def body_lost(self, reason: str) -> None:
        """The body will never be complete (the client went away)."""


class BodyStream:
    """A request body as it arrives; see the module docstring."""

    def __init__(self, transport: Any = None, on_early_answer: Callable[[], None] | None = None,
                 ) -> None:
        self.received = 0
        self.ended = False
        self.gone = False
        self._transport = transport
        self._on_early_answer = on_early_answer
        self._consumer: BodyConsumer | None = None
        self._backlog: list[bytes] = []
        self._backlog_size = 0
        self._paused_for_backlog = False
        self._paused_by_consumer = False
        self._reading_paused = False
        self._answered = False

    # -- twisted.web's side: the request's ``content`` ----------------------------------

    def write(self, data: bytes) -> None:
        if self._answered or self.ended:
            return
        self.received += len(data)
        consumer = self._consumer
        if consumer is not None:
            consumer.data_received(data)
            return
        self._backlog.append(data)
        self._backlog_size += len(data)
        if self._backlog_size > BACKLOG_LIMIT:
            self._paused_for_backlog = True
            self._update_reading()

    def tell(self) -> int:
        return self.received

    def seek(self, _offset: int, _whence: int = 0) -> int:
        return 0

    def read(self, _size: int = -1) -> bytes:
        return b""  # the body went to the consumer; nothing is kept to read again

    def close(self) -> None:
        """twisted.web is done with the body: after its end, or the connection is gone."""
        if not self.ended:
            self.lose("the connection closed before the whole body arrived")

    # -- the wire's side ------------------------------------------------------------------

    def end(self) -> None:
        """The whole body has arrived."""
        if self.ended or self.gone:
            return
        self.ended = True
        if self._consumer is not None:
            self._consumer.body_ended()

    def lose(self, reason: str) -> None:
        if self.ended or self.gone:
            return
        self.gone = True
        if self._consumer is not None:
            self._consumer.body_lost(reason)

    # -- the handler's side -----------------------------------------------------------

    def attach(self, consumer: BodyConsumer) -> None:
        """Deliver the body to ``consumer`` from now on (the backlog first)."""
        if self._consumer is not None:
            raise RuntimeError("a body stream has one consumer")
        self._consumer = consumer
        backlog, self._backlog, self._backlog_size = self._backlog, [], 0
        for data in backlog:
            consumer.data_received(data)
        if self._paused_for_backlog:
            self._paused_for_backlog = False
            self._update_reading()
        if self.ended:
            consumer.body_ended()
        elif self.gone:
            consumer.body_lost("the connection closed before the whole body arrived")

    def pause(self) -> None:
        """Stop reading the connection until :meth:`resume` (the consumer is behind)."""
        self._paused_by_consumer = True
        self._update_reading()

    def resume(self) -> None:
        self._paused_by_consumer = False
        self._update_reading()

    def answered_early(self) -> None:
        """The answer went out before the body ended: drop the rest and close."""
        if self._answered or self.ended:
            return
        self._answered = True
        self._consumer = None
        self._paused_by_consumer = self._paused_for_backlog = False
        self._update_reading()
        if self._on_early_answer is not None:
            self._on_early_answer()

    def _update_reading(self) -> None:
        paused = self._paused_by_consumer or self._paused_for_backlog
        transport = self._transport
        if paused == self._reading_paused or transport is None:
            return
        self._reading_paused = paused
        if paused:
            transport.pauseProducing()
        else:
            transport.resumeProducing()


def from_content(content: Any, *, chunk: int = _REPLAY_CHUNK) -> BodyStream:
    """A stream of a body twisted.web has already read (into ``content``), replayed in
    chunks read on a thread: the same consumer API for a request that could not be
    streamed (a test double's request, a wire that could not see the request line)."""
    return _ReplayedBody(content, chunk)


class _ReplayedBody(BodyStream):
    def __init__(self, content: Any, chunk: int) -> None:
        super().__init__()
        self._content = content
        self._chunk = chunk
        self._reading: Deferred[bytes] | None = None

    def attach(self, consumer: BodyConsumer) -> None:
        super().attach(consumer)
        if self._content is None:
            self.end()
            return
        self._content.seek(0)
        self._next()

    def resume(self) -> None:
        super().resume()
        self._next()

    def _next(self) -> None:
        if self._reading is not None or self._paused_by_consumer or self.ended or self.gone:
            return
        self._reading = deferToThread(self._content.read, self._chunk)
        self._reading.addCallbacks(self._got, self._failed)

    def _got(self, data: bytes) -> None:
        self._reading = None
        if not data:
            self.end()
            return
        self.write(data)
        self._next()

    def _failed(self, failure: Failure) -> None:
        self._reading = None
        self.lose(f"reading the buffered body failed: {failure.getErrorMessage()}")


# -- the requests of both wires --------------------------------------------------------


def close_after_answer(channel: Any) -> Callable[[], None]:
    """What drops the rest of a connection's input and closes it after an early answer:
    the fast wire's channel, or the stock wire's connection around its channel, knows
    how; anything else is closed outright."""
    for holder in (channel, getattr(channel, "transport", None)):
        method = getattr(holder, "close_after_answer", None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    return channel.loseConnection  # type: ignore[no-any-return]


def open_stream(request: Any, hooks: WireHooks | None) -> BodyStream | None:
    """At the end of ``request``'s head: a stream for its body when its route is
    streamed, with the request dispatched on the next turn of the reactor; else None.

    The request line is parked in the channel while the head is read; the request gets
    the attributes ``requestReceived`` would have given it, so the application can
    dispatch it now.
    """
    if hooks is None or hooks.streamed is None:
        return None
    channel = request.channel
    line = request_line_being_read(channel)
    if line is None:
        return None
    method, target, version = line
    path, question_mark, query = target.partition(b"?")
    if not hooks.streamed(method, path):
        return None
    request.method, request.uri, request.clientproto = method, target, version
    request.path = path
    request.args = parse_qs(query, 1) if question_mark else {}  # type: ignore[no-untyped-call]
    request.site = getattr(channel, "site", None)
    request.prepath, request.postpath = [], []
    request.responseHeaders.setRawHeaders(b"Date", [http_date()])
    stream = BodyStream(channel.transport, close_after_answer(channel))
    application: Any = hooks.application
    # Not now: twisted.web is in the middle of parsing the head.
    channel.callLater(0, application.render_streamed, request, stream)
    return stream


class StreamingRequest(server.Request):
    """The stock wire's request: ``server.Request``, whose body is a :class:`BodyStream`
    when its route is streamed (every other request is left to twisted.web)."""

    def gotLength(self, length: int | None) -> None:
        if length != 0:
            stream = open_stream(self, getattr(getattr(self.channel, "site", None),
                                               "wire_hooks", None))
            if stream is not None:
                self.content = stream
                return
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        content = self.content
        if isinstance(content, BodyStream):
            content.end()  # dispatched when its head arrived
            return
        super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]
