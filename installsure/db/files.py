"""The files table: the stored files' records, as the API and processors need them.

Every function takes a SQLAlchemy ``Connection`` and is meant for ``Database.run``.
Who may see what is decided by :mod:`installsure.auth.policy`; the listing queries take
its answer as a :class:`Visibility` and express it in SQL, so a page and its total
are counted over exactly the files the caller may see.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
from attrs import frozen
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from installsure.auth.principal import Principal
from installsure.db import audit
from installsure.db.members import member_role_column
from installsure.db.tables import files, project_members, projects

#: Sort orders of a listing, as the query string names them.
SORTS: dict[str, tuple[Any, bool]] = {
    "createdAt": (files.c.created_at, False),
    "-createdAt": (files.c.created_at, True),
    "originalName": (files.c.original_name, False),
    "-originalName": (files.c.original_name, True),
    "size": (files.c.size, False),
    "-size": (files.c.size, True),
}
#: Files shown in the stats' ``recentUploads``.
RECENT_UPLOADS = 5


@frozen
class FileRow:
    id: str
    project_id: str | None
    storage_key: str
    original_name: str
    mime_type: str
    extension: str
    size: int
    sha256: str
    status: str
    metadata: Any
    thumbnail_key: str | None
    uploaded_by: str | None
    created_at: dt.datetime
    processed_at: dt.datetime | None
    error: str | None


@frozen
class NewFile:
    id: str
    project_id: str | None
    storage_key: str
    original_name: str
    mime_type: str
    extension: str
    size: int
    sha256: str
    uploaded_by: str | None


@frozen
class Visibility:
    """Which files a caller may see: every file (``everything``, admins), the files of
    every project (``all_projects``, managers), or those of the projects ``user_id`` is a
    member of; and files without a project that ``user_id`` uploaded."""

    user_id: str | None
    all_projects: bool = False
    everything: bool = False


@frozen
class FileFilter:
    project_id: str | None = None
    extension: str | None = None
    status: str | None = None


@frozen
class FileStats:
    total_files: int
    total_size: int
    by_type: dict[str, int]
    by_status: dict[str, int]
    recent: list[FileRow]


def _row(row: Any) -> FileRow:
    mapping = row._mapping
    return FileRow(**{a.name: mapping[a.name] for a in attrs.fields(FileRow)})


_COLUMNS = [files.c[name] for name in (
    "id", "project_id", "storage_key", "original_name", "mime_type", "extension", "size",
    "sha256", "status", "metadata", "thumbnail_key", "uploaded_by", "created_at",
    "processed_at", "error",
)]


def _visible(visibility: Visibility) -> ColumnElement[bool]:
    if visibility.everything:
        return files.c.id.is_not(None)
    own_unassigned = (
        and_(files.c.project_id.is_(None), files.c.uploaded_by == visibility.user_id)
        if visibility.user_id is not None else false()
    )
    if visibility.all_projects:
        return or_(files.c.project_id.is_not(None), own_unassigned)
    member = exists().where(
        project_members.c.project_id == files.c.project_id,
        project_members.c.user_id == visibility.user_id,
    ) if visibility.user_id is not None else false()
    return or_(member, own_unassigned)


def _where(visibility: Visibility, wanted: FileFilter) -> list[ColumnElement[bool]]:
    clauses = [_visible(visibility)]
    if wanted.project_id is not None:
        clauses.append(files.c.project_id == wanted.project_id)
    if wanted.extension is not None:
        clauses.append(files.c.extension == wanted.extension)
    if wanted.status is not None:
        clauses.append(files.c.status == wanted.status)
    return clauses


def project_exists(connection: Connection, project_id: str) -> bool:
    found = connection.execute(select(projects.c.id).where(projects.c.id == project_id))
    return found.first() is not None


def insert_files(connection: Connection, new: Sequence[NewFile], actor: Principal,
                 request_id: str | None = None) -> list[FileRow]:
    """Record the files of one upload (all or none), each with its audit row."""
    now = dt.datetime.now(dt.UTC)
    for index, item in enumerate(new):
        # Distinct times keep the upload's order under "newest first".
        created = now + dt.timedelta(microseconds=index)
        connection.execute(insert(files).values(
            id=item.id, project_id=item.project_id, storage_key=item.storage_key,
            original_name=item.original_name, mime_type=item.mime_type,
            extension=item.extension, size=item.size, sha256=item.sha256,
            status="uploaded", uploaded_by=item.uploaded_by, created_at=created,
        ))
        audit.record(connection, actor=actor, action="file.uploaded", target_type="file",
                     target_id=item.id, project_id=item.project_id, request_id=request_id,
                     changes={"originalName": [None, item.original_name],
                              "size": [None, item.size]}, at=created)
    rows = connection.execute(
        select(*_COLUMNS).where(files.c.id.in_([item.id for item in new]))
        .order_by(files.c.created_at)
    )
    return [_row(row) for row in rows]


# Built once, as the projects repository's reads are: every file route runs it.
_BY_ID_FOR = select(*_COLUMNS, member_role_column(files.c.project_id, files)).where(
    files.c.id == bindparam("file_id"))
_BY_ID_FOR_LOCKED = _BY_ID_FOR.with_for_update(of=files)


def get_file_for(
    connection: Connection, file_id: str, user_id: str | None, *, lock: bool = False
) -> tuple[FileRow | None, str | None]:
    """The file and ``user_id``'s role in its project (None: no user, no project or
    not a member), in one query. ``lock``: hold the row until the transaction ends
    (``FOR UPDATE`` on PostgreSQL; SQLite's writers are serialized already)."""
    row = connection.execute(_BY_ID_FOR_LOCKED if lock else _BY_ID_FOR,
                             {"file_id": file_id, "user_id": user_id}).first()
    if row is None:
        return None, None
    return _row(row), row._mapping["member_role"]


def list_files(
    connection: Connection, visibility: Visibility, wanted: FileFilter, *,
    sort: str = "-createdAt", page: int = 1, per_page: int = 20,
) -> tuple[list[FileRow], int]:
    """One page of the visible files ``wanted`` describes, and how many there are."""
    clauses = _where(visibility, wanted)
    total = connection.execute(select(func.count()).select_from(files).where(*clauses))
    column, descending = SORTS[sort]
    order = [column.desc() if descending else column.asc(),
             files.c.id.desc() if descending else files.c.id.asc()]
    rows = connection.execute(
        select(*_COLUMNS).where(*clauses).order_by(*order)
        .limit(per_page).offset((page - 1) * per_page)
    )
    return [_row(row) for row in rows], int(total.scalar_one())


def file_stats(connection: Connection, visibility: Visibility, wanted: FileFilter) -> FileStats:
    clauses = _where(visibility, wanted)
    totals = connection.execute(
        select(func.count(), func.coalesce(func.sum(files.c.size), 0))
        .select_from(files).where(*clauses)
    ).one()
    by_type = connection.execute(
        select(files.c.extension, func.count()).where(*clauses).group_by(files.c.extension))
    by_status = connection.execute(
        select(files.c.status, func.count()).where(*clauses).group_by(files.c.status))
    recent = connection.execute(
        select(*_COLUMNS).where(*clauses)
        .order_by(files.c.created_at.desc(), files.c.id.desc()).limit(RECENT_UPLOADS))
    return FileStats(
        total_files=int(totals[0]), total_size=int(totals[1]),
        by_type={str(k): int(v) for k, v in by_type},
        by_status={str(k): int(v) for k, v in by_status},
        recent=[_row(row) for row in recent],
    )


def delete_file(connection: Connection, row: FileRow, actor: Principal,
                request_id: str | None = None) -> bool:
    """Remove a file's record (read in this transaction) with its audit row; False when
    it was gone already."""
    removed = connection.execute(delete(files).where(files.c.id == row.id)).rowcount
    if not removed:
        return False
    audit.record(connection, actor=actor, action="file.deleted", target_type="file",
                 target_id=row.id, project_id=row.project_id, request_id=request_id,
                 changes={"originalName": [row.original_name, None]})
    return True


def stored_keys(row: FileRow) -> list[str]:
    """Every storage key a file's record names (its bytes, its thumbnail)."""
    return [key for key in (row.storage_key, row.thumbnail_key) if key]


def referenced_keys(connection: Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` a file row names, as its bytes or its thumbnail (both columns
    indexed). For the orphan sweeper: keep ``keys`` to a few hundred per call."""
    if not keys:
        return set()
    wanted = list(keys)
    named = connection.execute(
        select(files.c.storage_key).where(files.c.storage_key.in_(wanted))
    ).scalars().all()
    thumbnails = connection.execute(
        select(files.c.thumbnail_key).where(files.c.thumbnail_key.in_(wanted))
    ).scalars().all()
    return {str(key) for key in (*named, *thumbnails)}


def project_storage_keys(connection: Connection, project_id: str) -> list[str]:
    """The storage keys of every file of a project: read them before deleting the
    project (its file rows go with it), then hand them to
    ``Storage.delete_stored_files``."""
    rows = connection.execute(
        select(files.c.storage_key, files.c.thumbnail_key)
        .where(files.c.project_id == project_id))
    return [key for row in rows for key in row if key]


def set_status(connection: Connection, file_id: str, status: str, *,
               error: str | None = None, metadata: Any = None,
               thumbnail_key: str | None = None) -> bool:
    """For processors: a file's new status (with its error, metadata, thumbnail)."""
    values: dict[str, Any] = {"status": status, "error": error}
    if status in ("processed", "failed"):
        values["processed_at"] = dt.datetime.now(dt.UTC)
    if metadata is not None:
        values["metadata"] = metadata
    if thumbnail_key is not None:
        values["thumbnail_key"] = thumbnail_key
    done = connection.execute(update(files).where(files.c.id == file_id).values(**values))
    return bool(done.rowcount)
