"""Response bodies sent as the client takes them (downloads), never whole in memory.

A handler opens a source and answers ``Response(body=StreamedBody(length, source))``; the API
resource sends the head with ``Content-Length: length`` and then registers a
:class:`_Pump` as the request's producer: it asks the source for the next chunk only
when the previous one was written and the connection is not backed up (the transport
pauses it when its buffer fills), so a slow client costs one chunk of memory, not a
file. Sources read on a thread (a file, an S3 response); the pump never blocks.
"""

from __future__ import annotations

from typing import Any, Protocol

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: Bytes asked of the source at a time.
CHUNK_SIZE = 256 * 1024


class ChunkSource(Protocol):
    """Where a streamed body's bytes come from, in order."""

    def read(self, size: int) -> Deferred[bytes]:
        """Up to ``size`` more bytes; ``b""`` at the end."""

    def close(self) -> None: ...


@frozen
class StreamedBody:
    """A body of ``length`` bytes read from ``source`` (already open: a source that
    cannot be opened is the handler's error to answer, before any byte is sent)."""

    length: int
    source: ChunkSource


class BodyCutError(Exception):
    """The body could not be sent whole (the client left, or the source failed)."""

    def __init__(self, sent: int, reason: str) -> None:
        super().__init__(reason)
        self.sent = sent


class _Pump:
    """The streaming producer that moves a source's chunks into the request."""

    def __init__(self, request: Any, source: ChunkSource, length: int) -> None:
        self._request = request
        self._source = source
        self._left = length
        self.sent = 0
        self._paused = False
        self._reading = False
        self._stopped = False
        self.done: Deferred[int] = Deferred()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._next()

    def stopProducing(self) -> None:
        self._finish(BodyCutError(self.sent, "the client went away"))

    def _next(self) -> None:
        if self._paused or self._reading or self._stopped:
            return
        if self._left <= 0:
            self._finish(None)
            return
        self._reading = True
        d = self._source.read(min(CHUNK_SIZE, self._left))
        d.addCallbacks(self._got, self._failed)

    def _got(self, data: bytes) -> None:
        self._reading = False
        if self._stopped:
            return
        if not data:
            self._finish(BodyCutError(self.sent, f"the source ended {self._left} bytes early"))
            return
        data = data[: self._left]
        self._left -= len(data)
        self.sent += len(data)
        self._request.write(data)
        self._next()

    def _failed(self, failure: Failure) -> None:
        self._reading = False
        self._finish(BodyCutError(self.sent, failure.getErrorMessage()))

    def _finish(self, error: BodyCutError | None) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._source.close()
        if error is None:
            self.done.callback(self.sent)
        else:
            self.done.errback(error)


def send_streamed(request: Any, body: StreamedBody) -> Deferred[int]:
    """Write ``body`` into ``request`` (whose head is set) and finish it; fires with the
    bytes sent, or fails with :class:`BodyCutError` (the connection is then closed, so the
    client sees a short body rather than a complete-looking one)."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))
    result: Deferred[int] = Deferred()
    request.write(b"")  # the head
    pump = _Pump(request, body.source, body.length)
    request.registerProducer(pump, True)

    def release() -> None:
        # After the connection is lost the request has no channel to unregister from.
        if getattr(request, "channel", None) is not None and request.producer is not None:
            request.unregisterProducer()

    def finished(sent: int) -> None:
        release()
        if not gone:
            request.finish()
        result.callback(sent)

    def cut(failure: Failure) -> None:
        error = failure.value
        release()
        if not gone:
            request.loseConnection()
        result.errback(BodyCutError(error.sent if isinstance(error, BodyCutError) else pump.sent,
                               failure.getErrorMessage()))

    pump.done.addCallbacks(finished, cut)
    pump.resumeProducing()
    return result
