"""Files (API.md "Files"): streamed upload, listing, stats, record, download, thumbnail,
delete. The routes declare; :class:`~installsure.files.library.FileLibrary` decides who
may do what, :class:`~installsure.files.receiver.UploadReceiver` takes uploads in."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from attrs import field, frozen, validators

from installsure.auth.principal import Principal
from installsure.db.files import FileFilter
from installsure.files.library import FileLibrary
from installsure.files.names import content_disposition
from installsure.files.receiver import UploadReceiver
from installsure.files.records import FileRecord, FileStatsRecord
from installsure.files.settings import UploadSettings
from installsure.files.types import ACCEPTED_EXTENSIONS
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError
from installsure.http.incoming import BodyStream
from installsure.http.outgoing import StreamedBody
from installsure.http.ranges import (
    UNSATISFIABLE,
    ByteRange,
    none_match,
    parse_range,
    range_still_valid,
)
from installsure.http.routing import (
    BinaryFile,
    HeaderDoc,
    Paged,
    Response,
    ResponseDoc,
    Router,
)
from installsure.storage.interface import ObjectMissingError, StorageError

TAGS = ("files",)
MAX_PER_PAGE = 100
FileType = Literal[ACCEPTED_EXTENSIONS]  # type: ignore[valid-type]
FileStatus = Literal["uploaded", "processing", "processed", "failed"]
FileSort = Literal["createdAt", "-createdAt", "originalName", "-originalName", "size", "-size"]


# What the download route reads and answers, for the OpenAPI document (the handler and
# installsure.http.ranges do the work).
_ETAG = HeaderDoc("ETag", "The file's SHA-256, quoted: the same for every download of it.",
                  required=True)
DOWNLOAD_REQUEST_HEADERS = (
    HeaderDoc("Range", "One range of bytes: `bytes=<first>-[<last>]` or `bytes=-<how many "
              "at the end>`, answered 206; 416 when it starts past the end. Several ranges, "
              "another unit or a malformed value are ignored (the whole file, 200)."),
    HeaderDoc("If-Range", "The ETag the client holds: the Range applies only while the "
              "file still has it, else the whole file comes (200)."),
    HeaderDoc("If-None-Match", "ETags the client holds, or `*`: answered 304 without a "
              "body when one of them is the file's."),
)
DOWNLOAD_HEADERS = (
    _ETAG,
    HeaderDoc("Accept-Ranges", "`bytes`: ranges may be asked for.", required=True),
    HeaderDoc("Content-Disposition", "`attachment`, with the name as uploaded in "
              "`filename*` (RFC 6266) and an ASCII `filename`.", required=True),
)
DOWNLOAD_RESPONSES = (
    ResponseDoc(200, "The whole file, in its record's `mimeType`."),
    ResponseDoc(206, "The range asked for.", headers=(HeaderDoc(
        "Content-Range", "The bytes sent and the file's size: `bytes <first>-<last>/<size>`.",
        required=True, schema={"type": "string", "pattern": r"^bytes \d+-\d+/\d+$"}),)),
    ResponseDoc(302, "With S3 storage and `storage.s3_presigned_downloads`: the file is at "
                "`Location`, a presigned URL of the bucket valid for "
                "`storage.s3_presign_ttl`.", has_body=False, headers=(
                    HeaderDoc("Location", "The presigned URL.", required=True),)),
    ResponseDoc(304, "Not modified: `If-None-Match` named the file's ETag.", has_body=False,
                headers=(_ETAG,)),
)
UNSATISFIABLE_RANGE = ResponseDoc(
    416, "Range not satisfiable: it starts past the end of the file (or the file is "
    "empty).", headers=(HeaderDoc(
        "Content-Range", "The file's size: `bytes */<size>`.", required=True,
        schema={"type": "string", "pattern": r"^bytes \*/\d+$"}),))


@frozen
class UploadForm:
    """``multipart/form-data``: one or more parts named ``file`` (each with a file name),
    and optionally, before them, ``projectId``."""

    file: list[BinaryFile] = field(validator=validators.min_len(1))
    project_id: uuid.UUID | None = None


@frozen
class UploadQuery:
    #: The project to upload into (instead of the form's ``projectId`` field).
    project_id: uuid.UUID | None = None


@frozen
class FilesQuery:
    project_id: uuid.UUID | None = None
    #: An extension, e.g. ``ifc``.
    type: FileType | None = None
    status: FileStatus | None = None
    sort: FileSort = "-createdAt"
    page: int = field(default=1, validator=[validators.ge(1), validators.le(1_000_000)])
    per_page: int = field(default=20, validator=[validators.ge(1),
                                                 validators.le(MAX_PER_PAGE)])


@frozen
class StatsQuery:
    project_id: uuid.UUID | None = None


@frozen
class Deleted:
    id: str


def _file_id(raw: str) -> str:
    """A path's file id, or 404 for anything that cannot be one (no database trip)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError("NOT_FOUND", "No such file.") from None


def _boundary(ctx: RequestContext) -> str:
    """The multipart boundary of the request's Content-Type, or 415."""
    raw = ctx.request.getHeader(b"content-type") or b""  # type: ignore[no-untyped-call]
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    media, _, params = text.partition(";")
    if media.strip().lower() == "multipart/form-data":
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            value = value.strip().strip('"')
            if name.strip().lower() == "boundary" and 0 < len(value) <= 200:
                return value
    raise ApiError("UNSUPPORTED_MEDIA_TYPE",
                   "Send the files as multipart/form-data (with a boundary).")


def _header(ctx: RequestContext, name: bytes) -> bytes | None:
    values = ctx.request.requestHeaders.getRawHeaders(name)
    return values[0] if values else None


def files_router(library: FileLibrary, limits: UploadSettings, *,
                 presigned_downloads: bool = False, presign_ttl: float = 300.0) -> Router:
    """The routes of ``/api/files``."""
    router = Router()

    def user(ctx: RequestContext) -> Principal:
        principal: Principal = ctx.user
        return principal

    @router.route(
        "POST", "/api/files/upload", body=UploadForm, query=UploadQuery, streamed=True,
        content_types=("multipart/form-data",), max_body=limits.max_body,
        response=list[FileRecord], status=201, auth="user", rate_limit="upload", tags=TAGS,
        errors=(403, 404, 413, 415, 503),
        summary="Upload files, streamed to storage as they arrive",
        description=(
            "Parts named `file` (at most `upload.max_files`, each at most "
            "`upload.max_size` bytes) and optionally, before them, `projectId` (or the "
            "`projectId` query parameter). Accepted: "
            + ", ".join(f"`.{e}`" for e in ACCEPTED_EXTENSIONS)
            + "; the content must start as its extension says. All files are kept or "
            "none; a `file-processing` job is queued for each."
        ),
    )
    async def upload(ctx: RequestContext, body: BodyStream,
                     query: UploadQuery) -> Response:
        principal = user(ctx)
        receiver = UploadReceiver(
            body, _boundary(ctx), storage=library.storage, limits=limits,
            authorize=lambda project_id: library.authorize_upload(principal, project_id),
            project_id=str(query.project_id) if query.project_id else None,
        )
        received = await receiver.start()
        records = await library.record_upload(principal, received, ctx.request_id)
        return Response(body=records, status=201)

    @router.route("GET", "/api/files", query=FilesQuery, response=Paged[FileRecord],
                  auth="user", tags=TAGS, errors=(404,),
                  summary="Files the caller may see, filtered, sorted and paged")
    async def list_files(ctx: RequestContext, query: FilesQuery) -> Paged[FileRecord]:
        wanted = FileFilter(project_id=str(query.project_id) if query.project_id else None,
                            extension=query.type, status=query.status)
        rows, total = await library.list(user(ctx), wanted, sort=query.sort,
                                         page=query.page, per_page=query.per_page)
        return Paged([FileRecord.of(row) for row in rows], query.page, query.per_page, total)

    @router.route("GET", "/api/files/stats", query=StatsQuery, response=FileStatsRecord,
                  auth="user", tags=TAGS, errors=(404,),
                  summary="Counts and sizes of the files the caller may see")
    async def stats(ctx: RequestContext, query: StatsQuery) -> FileStatsRecord:
        found = await library.stats(user(ctx),
                                    str(query.project_id) if query.project_id else None)
        waiting = found.by_status.get("uploaded", 0) + found.by_status.get("processing", 0)
        return FileStatsRecord(
            total=found.total_files, total_files=found.total_files,
            total_size=found.total_size, by_type=found.by_type, by_status=found.by_status,
            recent_uploads=[FileRecord.of(row) for row in found.recent],
            processing_queue=waiting,
        )

    @router.route("GET", "/api/files/{id}", response=FileRecord, auth="user", tags=TAGS,
                  summary="One file's record (with metadata once processed)")
    async def get_file(ctx: RequestContext, id: str) -> FileRecord:
        return FileRecord.of(await library.visible_file(user(ctx), _file_id(id)))

    async def stored(key: str, size: int, byte_range: ByteRange | None) -> StreamedBody:
        start, end = (0, size - 1) if byte_range is None else (byte_range.start,
                                                               byte_range.end)
        try:
            source = await library.open_bytes(key, start, end)
        except ObjectMissingError:
            raise ApiError("NOT_FOUND", "The file's stored bytes are missing.") from None
        except StorageError:
            raise ApiError("UNAVAILABLE", "The file storage does not answer; try again.",
                           headers=((b"Retry-After", b"5"),)) from None
        return StreamedBody(max(0, end - start + 1), source)

    @router.route(
        "GET", "/api/files/{id}/download", auth="user", tags=TAGS,
        # The file's own type (its record's mimeType): any media type.
        media_type="*/*", request_headers=DOWNLOAD_REQUEST_HEADERS,
        response_headers=DOWNLOAD_HEADERS, responses=DOWNLOAD_RESPONSES,
        errors=(UNSATISFIABLE_RANGE, 503),
        summary="The file's bytes (Range, ETag, If-None-Match)",
        description=(
            "`Content-Disposition: attachment` with the name as uploaded (RFC 6266 "
            "`filename*`, and an ASCII `filename`). One `Range: bytes=` range is answered "
            "206 (416 when it starts past the end); `ETag` is the SHA-256, "
            "`If-None-Match` with it answers 304. With S3 storage and "
            "`storage.s3_presigned_downloads`, a 302 to a short-lived URL of the bucket."
        ),
    )
    async def download(ctx: RequestContext, id: str) -> Response:
        row = await library.visible_file(user(ctx), _file_id(id))
        etag = b'"%s"' % row.sha256.encode("ascii")
        cache = (b"Cache-Control", b"private, no-cache")
        if none_match(_header(ctx, b"if-none-match"), etag):
            return Response(status=304, headers=[(b"ETag", etag), cache])
        disposition = content_disposition(row.original_name, row.extension)
        if presigned_downloads:
            backend = library.storage.backend
            url = await library.storage.run(backend.presigned_url, row.storage_key,
                                            presign_ttl, disposition, row.mime_type)
            if url is not None:
                return Response(status=302, headers=[
                    (b"Location", url.encode("ascii")), (b"Cache-Control", b"no-store")])
        headers = [(b"ETag", etag), cache, (b"Accept-Ranges", b"bytes"),
                   (b"Content-Disposition", disposition.encode("ascii"))]
        wanted: Any = None
        if range_still_valid(_header(ctx, b"if-range"), etag):
            wanted = parse_range(_header(ctx, b"range"), row.size)
        if wanted == UNSATISFIABLE:
            raise ApiError(
                "RANGE_NOT_SATISFIABLE",
                f"The range asked for is outside the file's {row.size} bytes.",
                headers=((b"Content-Range", b"bytes */%d" % row.size),),
            )
        status = 200
        if isinstance(wanted, ByteRange):
            status = 206
            headers.append((b"Content-Range", wanted.content_range(row.size)))
        body = await stored(row.storage_key, row.size,
                            wanted if status == 206 else None)
        return Response(body=body, status=status, headers=headers,
                        content_type=row.mime_type.encode("ascii"))

    @router.route("GET", "/api/files/{id}/thumbnail", auth="user", tags=TAGS,
                  media_type="image/png", errors=(503,),
                  summary="The file's thumbnail (PNG), once processing made one")
    async def thumbnail(ctx: RequestContext, id: str) -> Response:
        row = await library.visible_file(user(ctx), _file_id(id))
        if not row.thumbnail_key:
            raise ApiError("NOT_FOUND", "This file has no thumbnail (yet).")
        size = await library.storage.run(library.storage.backend.size, row.thumbnail_key)
        if size is None:
            raise ApiError("NOT_FOUND", "This file has no thumbnail (yet).")
        source = await stored(row.thumbnail_key, size, None)
        return Response(body=source, headers=[(b"Cache-Control", b"private, max-age=300")],
                        content_type=b"image/png")

    @router.route("DELETE", "/api/files/{id}", response=Deleted, auth="user", tags=TAGS,
                  summary="Delete a file: its record and its stored bytes")
    async def delete_file(ctx: RequestContext, id: str) -> Deleted:
        removed = await library.delete(user(ctx), _file_id(id), ctx.request_id)
        return Deleted(removed.id)

    return router

