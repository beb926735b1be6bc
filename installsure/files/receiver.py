"""Receiving ``multipart/form-data`` uploads as they arrive, straight into storage.

:class:`UploadReceiver` is the consumer of an upload's
:class:`~installsure.http.incoming.BodyStream`. The multipart parser (the ``multipart``
package's push parser, which keeps nothing but a partial boundary) turns each chunk of
the body into parts; each ``file`` part becomes a :class:`~installsure.files.sink.FileSink`.
Every limit is checked the moment it is crossed, and the upload then fails with the
answer the client gets (the HTTP layer sends it while the client is still sending):

* more than ``upload.max_files`` files, or a file over ``upload.max_size``, or a body
  larger than both allow: 413 ``PAYLOAD_TOO_LARGE``;
* an extension not accepted, or leading bytes that are not what the extension says:
  415 ``UNSUPPORTED_MEDIA_TYPE``;
* an empty file, a part that is neither ``file`` nor ``projectId``, a ``projectId``
  after the first file, a malformed body: 400.

Nothing is written until the upload is authorized (``authorize``, with the project the
form names before its first file, or None). A failed, refused or abandoned upload
aborts every file, committed ones too: no bytes stay behind. While more than
``HIGH_WATER`` bytes wait to be written, the connection is not read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from attrs import frozen
from multipart import MultipartError, MultipartSegment, PushMultipartParser
from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

from installsure.files.keys import storage_key
from installsure.files.names import clean_filename
from installsure.files.settings import UploadSettings
from installsure.files.sink import FileSink
from installsure.files.types import FileKind, accepted_list, kind_of
from installsure.http.errors import ApiError, FieldError, validation_error
from installsure.http.incoming import BodyStream
from installsure.storage.service import Storage

HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 2 * 1024 * 1024
_MAX_FIELD = 200
_MIB = 1024 * 1024


@frozen
class ReceivedFile:
    """One file of a completed upload, stored under ``key``."""

    id: str
    key: str
    original_name: str
    kind: FileKind
    size: int
    sha256: str


@frozen
class ReceivedUpload:
    project_id: str | None
    files: tuple[ReceivedFile, ...]


def _size_text(size: int) -> str:
    return f"{size // _MIB} MiB" if size % _MIB == 0 else f"{size} bytes"


def _fire_soon(d: Deferred[Any], result: Any) -> None:
    """Fire ``d`` on a later turn of the reactor: never from inside the parser's call
    (unless it was cancelled meanwhile: the request went away)."""
    from twisted.internet import reactor

    def fire() -> None:
        if d.called:
            return
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)

    reactor.callLater(0, fire)


class _FilePart:
    def __init__(self, file_id: str, name: str, kind: FileKind, sink: FileSink) -> None:
        self.id = file_id
        self.name = name
        self.kind = kind
        self.sink = sink
        self.head = b""
        self.checked = False
        self.commit: Deferred[str] | None = None


class UploadReceiver:
    """The consumer of one upload's body (see the module docstring)."""

    def __init__(
        self,
        stream: BodyStream,
        boundary: str,
        *,
        storage: Storage,
        limits: UploadSettings,
        authorize: Callable[[str | None], Deferred[None]],
        project_id: str | None = None,
    ) -> None:
        self._stream = stream
        self._storage = storage
        self._limits = limits
        self._authorize = authorize
        self._project_id = project_id
        #: The authorization asked for (None: not yet); sinks wait for ``_allowed``,
        #: which fires only when it succeeds.
        self._gate: Deferred[None] | None = None
        self._allowed: Deferred[None] = Deferred()
        self._parser = PushMultipartParser(boundary, max_header_count=8)
        self._received = 0
        self._waiting = 0
        self._paused = False
        self._part: _FilePart | bytearray | None = None
        self._field_name = ""
        self._files: list[_FilePart] = []
        self._finished = False  # the outcome is decided
        self._body_done = False  # the body has ended: nothing more to parse
        #: Fires with the :class:`ReceivedUpload`, or fails with the ApiError to answer.
        self.result: Deferred[ReceivedUpload] = Deferred(self._cancelled)
        if project_id is not None:
            self._open_gate()

    @property
    def finished(self) -> bool:
        """Whether the upload has succeeded or failed (nothing more is read)."""
        return self._finished

    def start(self) -> Deferred[ReceivedUpload]:
        self._stream.attach(self)
        return self.result

    # -- the body stream's side ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._finished or self._body_done:
            return
        self._received += len(data)
        if self._received > self._limits.max_body:
            self._fail(ApiError(
                "PAYLOAD_TOO_LARGE",
                f"The upload is larger than {self._limits.max_files} files of "
                f"{_size_text(self._limits.max_size)} can be.",
            ))
            return
        try:
            for event in self._parser.parse(data):
                self._on_event(event)
                if self.finished:
                    return
        except MultipartError as e:
            self._fail(ApiError("BAD_REQUEST", f"The multipart body is not valid: {e}"))
        except ApiError as e:
            self._fail(e)

    def body_ended(self) -> None:
        if self._finished or self._body_done:
            return
        try:
            self._parser.close()
        except MultipartError as e:
            self._fail(ApiError("BAD_REQUEST", f"The multipart body is not valid: {e}"))
            return
        if not self._files:
            self._fail(validation_error([FieldError("file", "send at least one file part")]))
            return
        self._body_done = True
        commits = [part.commit for part in self._files if part.commit is not None]
        DeferredList(commits, fireOnOneErrback=True, consumeErrors=True).addCallbacks(
            self._stored, self._store_failed)

    def body_lost(self, reason: str) -> None:
        if not self._finished and not self._body_done:
            self._fail(ApiError("BAD_REQUEST", f"The upload did not arrive whole: {reason}."))

    # -- parsing ------------------------------------------------------------------------

    def _on_event(self, event: MultipartSegment | bytes | None) -> None:
        if isinstance(event, MultipartSegment):
            self._begin_part(event)
        elif event is None:
            self._end_part()
        elif isinstance(self._part, _FilePart):
            self._file_bytes(self._part, event)
        elif isinstance(self._part, bytearray):
            self._part += event
            if len(self._part) > _MAX_FIELD:
                raise validation_error([FieldError(self._field_name, "is too long")])

    def _begin_part(self, segment: MultipartSegment) -> None:
        name = segment.name or ""
        if name == "file" and segment.filename is not None:
            self._begin_file(segment)
        elif name == "projectId" and segment.filename is None:
            if self._files or self._gate is not None:
                raise validation_error([FieldError(
                    "projectId", "must come before the first file part (or be given in "
                    "the query string)")])
            self._field_name = name
            self._part = bytearray()
        else:
            raise validation_error([FieldError(
                name or "(unnamed part)",
                "is not a field of an upload: send parts named 'file' (with a file name) "
                "and, optionally first, 'projectId'",
            )])

    def _begin_file(self, segment: MultipartSegment) -> None:
        if len(self._files) >= self._limits.max_files:
            raise ApiError(
                "PAYLOAD_TOO_LARGE",
                f"An upload may hold at most {self._limits.max_files} files.",
            )
        raw_name = _extended_filename(segment) or segment.filename or ""
        name = clean_filename(raw_name)
        kind = kind_of(name)
        if kind is None:
            raise ApiError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"{name or 'A file without a name'!r} is not a file type this server "
                f"accepts; send one of {accepted_list()}.",
            )
        if self._gate is None:
            self._open_gate()
        assert self._gate is not None  # noqa: S101 - for mypy
        file_id = str(uuid.uuid4())
        sink = FileSink(self._storage, storage_key(file_id), self._allowed, self._pressure)
        part = _FilePart(file_id, name, kind, sink)
        self._files.append(part)
        self._part = part

    def _file_bytes(self, part: _FilePart, data: bytes) -> None:
        if not part.checked:
            part.head += data[: part.kind.needs - len(part.head)]
            if len(part.head) >= part.kind.needs:
                self._check_signature(part)
        part.sink.write(data)
        if part.sink.size > self._limits.max_size:
            raise ApiError(
                "PAYLOAD_TOO_LARGE",
                f"{part.name!r} is larger than the limit of "
                f"{_size_text(self._limits.max_size)} per file.",
            )

    def _check_signature(self, part: _FilePart) -> None:
        part.checked = True
        if not part.kind.matches(part.head):
            raise ApiError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"{part.name!r} is not a .{part.kind.extension} file: its content does not "
                f"start the way .{part.kind.extension} files do.",
            )

    def _end_part(self) -> None:
        part, self._part = self._part, None
        if isinstance(part, _FilePart):
            if part.sink.size == 0:
                raise validation_error([FieldError("file", f"{part.name!r} is empty")])
            if not part.checked:
                self._check_signature(part)
            part.commit = part.sink.commit()
        elif isinstance(part, bytearray):
            self._project_field(bytes(part))

    def _project_field(self, raw: bytes) -> None:
        try:
            value = str(uuid.UUID(raw.decode("utf-8").strip()))
        except (UnicodeDecodeError, ValueError):
            raise validation_error([FieldError("projectId", "must be a UUID")]) from None
        self._project_id = value
        self._open_gate()

    # -- authorization, back-pressure, the end ----------------------------------------

    def _open_gate(self) -> None:
        self._gate = self._authorize(self._project_id)
        # Authorization is a database round trip: stop reading meanwhile.
        self._stream.pause()

        def authorized(_: object) -> None:
            if not self._finished:
                self._allowed.callback(None)
                self._update_reading()

        def refused(failure: Failure) -> None:
            self._fail(failure.value if isinstance(failure.value, ApiError) else failure)

        self._gate.addCallbacks(authorized, refused)

    def _pressure(self, delta: int) -> None:
        self._waiting += delta
        self._update_reading()

    def _update_reading(self) -> None:
        if self._finished or (self._gate is not None and not self._gate.called):
            return
        if not self._paused and self._waiting > HIGH_WATER:
            self._paused = True
            self._stream.pause()
        elif self._paused and self._waiting < LOW_WATER:
            self._paused = False
            self._stream.resume()
        elif not self._paused:
            self._stream.resume()  # e.g. after the authorization pause

    def _stored(self, results: list[tuple[bool, str]]) -> None:
        files = tuple(
            ReceivedFile(part.id, part.sink.key, part.name, part.kind, part.sink.size, digest)
            for part, (_ok, digest) in zip(self._files, results, strict=True)
        )
        if not self._finished:
            self._finished = True
            self.result.callback(ReceivedUpload(self._project_id, files))

    def _store_failed(self, failure: Failure) -> None:
        error = failure.value
        inner = getattr(error, "subFailure", None)
        message = inner.getErrorMessage() if inner is not None else failure.getErrorMessage()
        self._fail(ApiError(
            "UNAVAILABLE", "The file storage could not keep the upload; try again.",
            details=[FieldError("file", message[:200])] if message else (),
        ))

    def _fail(self, error: ApiError | Failure) -> None:
        """Give up: remove every file of the upload and answer ``error``."""
        if self._finished:
            return
        self._finished = True
        self.discard()
        if not self.result.called:
            _fire_soon(self.result, error if isinstance(error, Failure) else Failure(error))  # type: ignore[no-untyped-call]

    def discard(self) -> None:
        """Remove whatever the upload stored (its files are not kept after all)."""
        for part in self._files:
            part.sink.abort()
        if self._paused:
            self._paused = False
            self._stream.resume()

    def _cancelled(self, _d: Deferred[ReceivedUpload]) -> None:
        # The request went away (the handler was cancelled).
        self._finished = True
        self.discard()


def _extended_filename(segment: MultipartSegment) -> str | None:
    """The RFC 8187 ``filename*=UTF-8''...`` of a part, which the parser ignores."""
    header = segment.header("Content-Disposition", "") or ""
    marker = header.lower().find("filename*=")
    if marker < 0:
        return None
    value = header[marker + len("filename*="):].split(";", 1)[0].strip().strip('"')
    charset, _, rest = value.partition("'")
    _language, _, encoded = rest.partition("'")
    if charset.lower() not in ("utf-8", "utf8") or not encoded:
        return None
    from urllib.parse import unquote

    try:
        return unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
