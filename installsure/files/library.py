"""The files of InstallSure: who may do what with them, and what each change sets off.

:class:`FileLibrary` is what the API's file routes call. Every decision goes through
:mod:`installsure.auth.policy`: a file of a project is visible to those who may view
the project (404 otherwise, as for the project itself), changed by those who may edit
it; a file without a project is visible to its uploader and to admins. Uploaders may
delete their own files. A route about one file reads the file and the caller's role in
its project in one query (:func:`installsure.db.files.get_file_for`) and decides on
that, in the same transaction as the change for a delete. Every change writes an audit
row and a business-log event, queues what follows (a ``file-processing`` job per upload)
and publishes the project's file event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure import logs
from installsure.auth.interfaces import ProjectAccess
from installsure.auth.policy import (
    ProjectAction,
    project_permits,
    require_file,
    require_project,
)
from installsure.auth.principal import Principal
from installsure.db import files as repository
from installsure.db.files import FileFilter, FileRow, FileStats, NewFile, Visibility
from installsure.db.projects import DeletedFile
from installsure.db.service import Database
from installsure.events import DomainEventPublisher
from installsure.files.events import file_event, project_file_topic
from installsure.files.processing import FILE_PROCESSING, FileProcessing
from installsure.files.receiver import ReceivedUpload
from installsure.files.records import FileRecord
from installsure.http.errors import ApiError
from installsure.http.validation import unstructure
from installsure.jobs import JobQueue
from installsure.storage.interface import ObjectReader
from installsure.storage.service import Storage

log = Logger(namespace="installsure.files")

_NOT_FOUND = "No such file."


def _shielded(d: Deferred[Any]) -> Deferred[Any]:
    """A Deferred with ``d``'s result that can be cancelled without cancelling ``d``
    (work that must finish once begun, such as a commit)."""
    out: Deferred[Any] = Deferred()

    def relay(result: object) -> None:
        if out.called:  # cancelled meanwhile: the result has no one waiting
            return
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)

    d.addBoth(relay)
    return out


class StoredBytes:
    """A stored object's byte range, read on the storage pool (a ChunkSource)."""

    def __init__(self, storage: Storage, reader: ObjectReader) -> None:
        self._storage = storage
        self._reader = reader

    def read(self, size: int) -> Deferred[bytes]:
        return self._storage.run(self._reader.read, size)

    def close(self) -> None:
        self._storage.run(self._reader.close).addErrback(lambda _: None)


class FileLibrary:
    """See the module docstring."""

    def __init__(
        self,
        database: Database,
        storage: Storage,
        access: ProjectAccess,
        *,
        events: DomainEventPublisher,
        queue: JobQueue | None = None,
        processing: bool = True,
    ) -> None:
        self.database = database
        self.storage = storage
        self.access = access
        self.events = events
        self.queue = queue
        self.processing = processing

    # -- who may do what -------------------------------------------------------------

    @staticmethod
    def visibility(principal: Principal) -> Visibility:
        return Visibility(
            user_id=None if principal.is_service else principal.id,
            all_projects=project_permits(principal, None, ProjectAction.VIEW),
            everything=principal.role == "admin",
        )

    async def require_project(self, principal: Principal, project_id: str,
                              action: ProjectAction) -> None:
        """404 when the project does not exist or is not visible, 403 when ``action``
        is not allowed in it."""
        exists = await self.database.run(
            lambda c: repository.project_exists(c, project_id), readonly=True)
        role = await self.access.project_role(principal, project_id) if exists else None
        require_project(principal, role, action, exists=exists)

    def authorize_upload(self, principal: Principal, project_id: str | None) -> Deferred[None]:
        """May ``principal`` upload into ``project_id`` (None: no project)?"""
        if project_id is None:
            if principal.role not in ("admin", "manager", "member"):
                raise_error = ApiError("FORBIDDEN", "Your role may not upload files.")
                return Deferred.fromCoroutine(_raise(raise_error))
            return Deferred.fromCoroutine(_nothing())
        return Deferred.fromCoroutine(
            self.require_project(principal, project_id, ProjectAction.EDIT))

    def visible_file(self, principal: Principal, file_id: str) -> Deferred[FileRow]:
        """The file, if ``principal`` may see it (404 otherwise): one query."""
        return self.database.run(
            lambda c: _permitted_file(c, principal, file_id, ProjectAction.VIEW),
            readonly=True)

    # -- uploads ----------------------------------------------------------------------

    async def record_upload(self, principal: Principal, upload: ReceivedUpload,
                            request_id: str) -> list[FileRecord]:
        """Record a received upload's files (one transaction), then queue their
        processing and publish their events. The stored bytes are removed when the
        records cannot be written; once written, a client that leaves does not undo
        them."""
        uploader = None if principal.is_service else principal.id
        new = [
            NewFile(id=f.id, project_id=upload.project_id, storage_key=f.key,
                    original_name=f.original_name, mime_type=f.kind.mime_type,
                    extension=f.kind.extension, size=f.size, sha256=f.sha256,
                    uploaded_by=uploader)
            for f in upload.files
        ]
        writing = self.database.run(
            lambda c: repository.insert_files(c, new, principal, request_id))

        def keep_or_remove(result: object) -> object:
            if isinstance(result, Failure):
                self.storage.delete_stored_files([f.key for f in upload.files])
            return result

        writing.addBoth(keep_or_remove)
        rows: list[FileRow] = await _shielded(writing)
        after = self._after_upload(principal, rows)
        await _shielded(after)
        return [FileRecord.of(row) for row in rows]

    def _after_upload(self, principal: Principal, rows: Sequence[FileRow]) -> Deferred[None]:
        for row in rows:
            logs.business_event("file.uploaded", fileId=row.id, projectId=row.project_id,
                                userId=principal.id, size=row.size, extension=row.extension)
            self._publish("added", row)
        if self.queue is None or not self.processing:
            return Deferred.fromCoroutine(_nothing())
        payloads = [FileProcessing(
            file_id=row.id, project_id=row.project_id, storage_key=row.storage_key,
            extension=row.extension, mime_type=row.mime_type, size=row.size,
            sha256=row.sha256) for row in rows]
        queued = self.queue.enqueue_bulk(FILE_PROCESSING, payloads)

        def not_queued(failure: Failure) -> None:
            # The files are kept; they stay "uploaded" until processing is queued again.
            log.warn("could not queue processing of {count} uploaded files: {error}",
                     count=len(payloads), error=failure.getErrorMessage())

        return queued.addCallbacks(lambda _ids: None, not_queued)

    def _publish(self, action: str, row: FileRow) -> None:
        if row.project_id is None:
            return
        try:
            self.events.publish(project_file_topic(row.project_id),
                                file_event(action, unstructure(FileRecord.of(row))))
        except Exception:  # an event hook must never undo the change
            log.failure("publishing the {action} event of file {file_id} failed",
                        action=action, file_id=row.id)

    # -- reading ----------------------------------------------------------------------

    async def list(self, principal: Principal, wanted: FileFilter, *, sort: str,
                   page: int, per_page: int) -> tuple[list[FileRow], int]:
        if wanted.project_id is not None:
            await self.require_project(principal, wanted.project_id, ProjectAction.VIEW)
        visibility = self.visibility(principal)
        return await self.database.run(
            lambda c: repository.list_files(c, visibility, wanted, sort=sort, page=page,
                                            per_page=per_page), readonly=True)

    async def stats(self, principal: Principal, project_id: str | None) -> FileStats:
        if project_id is not None:
            await self.require_project(principal, project_id, ProjectAction.VIEW)
        visibility = self.visibility(principal)
        return await self.database.run(
            lambda c: repository.file_stats(c, visibility, FileFilter(project_id=project_id)),
            readonly=True)

    async def open_bytes(self, key: str, start: int, end: int | None) -> StoredBytes:
        reader = await self.storage.run(self.storage.backend.open, key, start, end)
        return StoredBytes(self.storage, reader)

    # -- deleting ---------------------------------------------------------------------

    async def delete(self, principal: Principal, file_id: str, request_id: str) -> FileRow:
        """Delete a file's record and then its bytes: reading it with the caller's role,
        deciding, deleting and the audit row are one transaction."""

        def remove(c: Connection) -> FileRow:
            row = _permitted_file(c, principal, file_id, ProjectAction.DELETE_FILE,
                                  lock=True)
            if not repository.delete_file(c, row, principal, request_id):
                raise ApiError("NOT_FOUND", _NOT_FOUND)  # deleted by someone else meanwhile
            return row

        removed = await self.database.run(remove)
        # After the commit: a failure leaves unreferenced bytes (logged; the orphan
        # sweeper takes them later), never a record without its bytes.
        self.storage.delete_stored_files(repository.stored_keys(removed))
        logs.business_event("file.deleted", fileId=removed.id, projectId=removed.project_id,
                            userId=principal.id)
        self._publish("deleted", removed)
        return removed

    def project_files_deleted(self, project_id: str, files: Sequence[DeletedFile]) -> None:
        """The projects routes' hook: a deleted project's file rows are gone (with the
        project, by cascade); its stored bytes and thumbnails go now."""
        keys = [key for f in files for key in (f.storage_key, f.thumbnail_key) if key]
        log.info("removing {count} stored files of deleted project {project_id}",
                 count=len(files), project_id=project_id)
        self.storage.delete_stored_files(keys)


def _permitted_file(connection: Connection, principal: Principal, file_id: str,
                    action: ProjectAction, *, lock: bool = False) -> FileRow:
    """The file if ``principal`` may do ``action`` to it, read with the principal's
    role in its project in one query; else the policy's 404 or 403."""
    user_id = None if principal.is_service else principal.id
    row, role = repository.get_file_for(connection, file_id, user_id, lock=lock)
    require_file(principal, action, exists=row is not None,
                 project_id=row.project_id if row else None,
                 uploaded_by=row.uploaded_by if row else None, project_role=role)
    assert row is not None  # noqa: S101 - require_file refused otherwise
    return row


async def _nothing() -> None:
    return None


async def _raise(error: ApiError) -> None:
    raise error
