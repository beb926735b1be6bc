"""The projects repository: synchronous functions of a Connection, for ``Database.run``.

Each function is one step of a transaction the caller owns, so a change, its
membership rows and its audit row commit together. Rules the database must hold under
concurrency are enforced by the database itself:

* names are unique case-insensitively through the unique ``name_key`` column (the
  folded name); two concurrent creates of one name give one row and one
  :class:`ProjectNameTaken`;
* an update or delete that names the version it expects checks it in the statement's
  own ``WHERE``, so of two concurrent editors holding the same version exactly one
  wins and the other gets :class:`ProjectVersionMismatch`.

Search (``q``) is case-insensitive on both dialects: PostgreSQL's ``lower()`` knows
Unicode; SQLite's knows only ASCII, so there the query uses a Python function
registered on the connection.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from attrs import frozen
from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError

from installsure.db.members import member_role_column
from installsure.db.tables import files, project_members, projects

#: The columns a client may set, in the order the API lists them.
EDITABLE_FIELDS = (
    "name", "description", "status", "progress", "budget", "start_date", "end_date",
    "contractor", "location",
)

#: ``sort`` values of the list and what they order by (ties broken by id).
SORTS = {
    "name": (projects.c.name_key, False),
    "-name": (projects.c.name_key, True),
    "createdAt": (projects.c.created_at, False),
    "-createdAt": (projects.c.created_at, True),
    "updatedAt": (projects.c.updated_at, False),
    "-updatedAt": (projects.c.updated_at, True),
}

_SQLITE_LOWER = "installsure_lower"


class ProjectNameTaken(Exception):  # noqa: N818 - a refusal, named for what it says
    """Another project already has this name (compared case-insensitively)."""


class ProjectVersionMismatch(Exception):  # noqa: N818
    """The project changed since the version the caller holds."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"the project is at version {current_version}")
        self.current_version = current_version


class ProjectNotFound(Exception):  # noqa: N818
    """No project has this id."""


@frozen
class ProjectRecord:
    """A project row with the number of its files."""

    id: str
    name: str
    description: str | None
    status: str
    progress: int
    budget: Decimal | None
    start_date: date | None
    end_date: date | None
    contractor: str | None
    location: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    file_count: int


@frozen
class DeletedFile:
    """A file row that went with its project: the bytes to remove from storage."""

    id: str
    storage_key: str
    thumbnail_key: str | None


def fold_name(name: str) -> str:
    """The key two names are compared by: NFKC-normalized and case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def _file_count() -> Any:
    return (
        select(func.count())
        .select_from(files)
        .where(files.c.project_id == projects.c.id)
        .correlate(projects)
        .scalar_subquery()
        .label("file_count")
    )


def _select_projects(*extra: Any) -> Select[Any]:
    return select(*projects.c, _file_count(), *extra)


def _record(row: RowMapping) -> ProjectRecord:
    budget = row["budget"]
    return ProjectRecord(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        status=row["status"],
        progress=int(row["progress"]),
        budget=None if budget is None else Decimal(budget).quantize(Decimal("0.01")),
        start_date=row["start_date"],
        end_date=row["end_date"],
        contractor=row["contractor"],
        location=row["location"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=int(row["version"]),
        file_count=int(row["file_count"] or 0),
    )


# The reads every request makes are built once: building a statement costs ten times
# what running it does (SQLAlchemy then finds the compiled form in its cache).
_MEMBER_ROLE = member_role_column(projects.c.id, projects)
_BY_ID = _select_projects().where(projects.c.id == bindparam("project_id"))
_BY_ID_FOR = _select_projects(_MEMBER_ROLE).where(projects.c.id == bindparam("project_id"))
_BY_ID_FOR_LOCKED = _BY_ID_FOR.with_for_update(of=projects)
_ROLE = select(project_members.c.role).where(
    project_members.c.project_id == bindparam("project_id"),
    project_members.c.user_id == bindparam("user_id"),
)


def get_project(connection: Connection, project_id: str) -> ProjectRecord | None:
    row = connection.execute(_BY_ID, {"project_id": project_id}).mappings().first()
    return None if row is None else _record(row)


def get_project_for(
    connection: Connection, project_id: str, user_id: str | None, *, lock: bool = False
) -> tuple[ProjectRecord | None, str | None]:
    """The project and ``user_id``'s role in it (None: no user), in one query.
    ``lock``: hold the row (``FOR UPDATE`` on PostgreSQL; SQLite's writers are
    serialized already)."""
    query = _BY_ID_FOR_LOCKED if lock else _BY_ID_FOR
    row = connection.execute(
        query, {"project_id": project_id, "user_id": user_id}
    ).mappings().first()
    if row is None:
        return None, None
    return _record(row), row["member_role"]


def role_of(connection: Connection, project_id: str, user_id: str) -> str | None:
    """``user_id``'s role in ``project_id``, or None (not a member, or no project)."""
    return connection.execute(
        _ROLE, {"project_id": project_id, "user_id": user_id}
    ).scalar_one_or_none()


def _lower(connection: Connection, column: Any) -> ColumnElement[Any]:
    if connection.dialect.name == "sqlite":
        driver: Any = connection.connection.driver_connection
        # Cheap, and it must be on whichever pooled connection runs this query.
        driver.create_function(_SQLITE_LOWER, 1, _python_lower, deterministic=True)
        return getattr(func, _SQLITE_LOWER)(column)  # type: ignore[no-any-return]
    return func.lower(column)


def _python_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_projects(
    connection: Connection,
    *,
    member_id: str | None,
    status: str | None = None,
    q: str | None = None,
    sort: str = "-createdAt",
    page: int = 1,
    per_page: int = 20,
) -> tuple[list[ProjectRecord], int]:
    """One page of projects and the total matching. ``member_id``: only projects that
    user is a member of (None: all projects)."""
    conditions: list[Any] = []
    if member_id is not None:
        conditions.append(exists().where(
            project_members.c.project_id == projects.c.id,
            project_members.c.user_id == member_id,
        ))
    if status is not None:
        conditions.append(projects.c.status == status)
    if q:
        pattern = "%" + _escape_like(q.lower()) + "%"
        conditions.append(or_(*(
            _lower(connection, column).like(pattern, escape="\\")
            for column in (projects.c.name, projects.c.description, projects.c.contractor,
                           projects.c.location)
        )))
    where = and_(true(), *conditions)
    total = connection.execute(
        select(func.count()).select_from(projects).where(where)
    ).scalar_one()
    column, descending = SORTS[sort]
    order = [column.desc(), projects.c.id.desc()] if descending else [column, projects.c.id]
    rows = connection.execute(
        _select_projects().where(where).order_by(*order)
        .limit(per_page).offset((page - 1) * per_page)
    ).mappings()
    return [_record(r) for r in rows], int(total)


def _is_name_clash(error: IntegrityError) -> bool:
    return "name_key" in str(error.orig)


def _name_taken(connection: Connection, key: str, except_id: str | None = None) -> bool:
    query = select(projects.c.id).where(projects.c.name_key == key)
    if except_id is not None:
        query = query.where(projects.c.id != except_id)
    return connection.execute(query.limit(1)).first() is not None


def _column_values(values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(values) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable project fields: {sorted(unknown)}")
    out = dict(values)
    if "budget" in out and out["budget"] is not None:
        # Through float: SQLite has no decimal type, and 14 digits survive a double.
        out["budget"] = float(out["budget"])
    if "name" in out:
        out["name_key"] = fold_name(out["name"])
    return out


def create_project(
    connection: Connection,
    project_id: str,
    values: Mapping[str, Any],
    *,
    owner_id: str | None,
    now: datetime,
) -> ProjectRecord:
    """Insert the project and, when ``owner_id`` is given, its owner's membership."""
    columns = _column_values(values)
    if _name_taken(connection, columns["name_key"]):
        raise ProjectNameTaken(values["name"])
    try:
        connection.execute(insert(projects).values(
            id=project_id, created_by=owner_id, created_at=now, updated_at=now, version=1,
            **columns,
        ))
    except IntegrityError as e:
        # A concurrent create of the same name committed between the check and here.
        if _is_name_clash(e):
            raise ProjectNameTaken(values["name"]) from None
        raise
    if owner_id is not None:
        connection.execute(insert(project_members).values(
            project_id=project_id, user_id=owner_id, role="owner", added_at=now,
            added_by=owner_id,
        ))
    created = get_project(connection, project_id)
    assert created is not None  # noqa: S101 - inserted just above
    return created


def update_project(
    connection: Connection,
    project_id: str,
    values: Mapping[str, Any],
    *,
    expected_version: int,
    now: datetime,
) -> ProjectRecord:
    """Set ``values`` if the project is still at ``expected_version``; the new row.

    Raises ProjectNotFound, ProjectVersionMismatch or ProjectNameTaken.
    """
    columns = _column_values(values)
    if "name_key" in columns and _name_taken(connection, columns["name_key"], project_id):
        raise ProjectNameTaken(values["name"])
    try:
        result = connection.execute(
            update(projects)
            .where(projects.c.id == project_id, projects.c.version == expected_version)
            .values(updated_at=now, version=projects.c.version + 1, **columns)
        )
    except IntegrityError as e:
        if _is_name_clash(e):
            raise ProjectNameTaken(values["name"]) from None
        raise
    if result.rowcount == 0:
        _raise_missing_or_moved(connection, project_id)
    updated = get_project(connection, project_id)
    assert updated is not None  # noqa: S101 - updated just above, in this transaction
    return updated


def _raise_missing_or_moved(connection: Connection, project_id: str) -> None:
    version = connection.execute(
        select(projects.c.version).where(projects.c.id == project_id)
    ).scalar_one_or_none()
    if version is None:
        raise ProjectNotFound(project_id)
    raise ProjectVersionMismatch(int(version))


def delete_project(
    connection: Connection, project_id: str, *, expected_version: int
) -> list[DeletedFile]:
    """Delete the project (members and file rows go by cascade) if it is still at
    ``expected_version``; the files whose stored bytes should now be removed."""
    gone = [
        DeletedFile(r.id, r.storage_key, r.thumbnail_key)
        for r in connection.execute(
            select(files.c.id, files.c.storage_key, files.c.thumbnail_key)
            .where(files.c.project_id == project_id)
        )
    ]
    result = connection.execute(
        delete(projects).where(projects.c.id == project_id,
                               projects.c.version == expected_version)
    )
    if result.rowcount == 0:
        _raise_missing_or_moved(connection, project_id)
    return gone
