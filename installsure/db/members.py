"""Project membership rows: list, add, change role, remove; a project keeps an owner.

Functions of a Connection for ``Database.run``, like :mod:`installsure.db.projects`.
Every change first locks the project's row (``FOR UPDATE`` on PostgreSQL; SQLite
serializes writers already), so two owners demoting each other at once cannot leave
the project without one: the second sees the first's change and is refused with
:class:`LastOwner`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from attrs import frozen
from sqlalchemy import (
    Connection,
    RowMapping,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)

from installsure.db.tables import PROJECT_ROLES, project_members, projects, users


def member_role_column(project_id: Any, outer: Any) -> Any:
    """A column of a query over ``outer`` (projects, files): the role of the user bound
    as ``user_id`` in the project ``project_id`` names (NULL: no user, no project or not
    a member), so a row and its reader's role come in one query."""
    return (
        select(project_members.c.role)
        .where(project_members.c.project_id == project_id,
               project_members.c.user_id == bindparam("user_id"))
        .correlate(outer)
        .scalar_subquery()
        .label("member_role")
    )


class MembershipRefused(Exception):  # noqa: N818 - refusals, named for what they say
    """Base of the refusals below; ``str()`` is a sentence for the client."""


class UserNotFound(MembershipRefused):
    """No user has this id."""


class UserInactive(MembershipRefused):
    """The user's account is deactivated."""


class AlreadyMember(MembershipRefused):
    """The user is a member already (change the role instead)."""


class NotAMember(MembershipRefused):
    """The user is not a member of the project."""


class LastOwner(MembershipRefused):
    """The change would leave the project without an owner."""


@frozen
class MemberRecord:
    """One membership, with the user's name and e-mail for display."""

    project_id: str
    user_id: str
    role: str
    name: str
    email: str
    is_active: bool
    added_at: datetime
    added_by: str | None


_ROLE_RANK = case({role: rank for rank, role in enumerate(PROJECT_ROLES)},
                  value=project_members.c.role)


def _select_members() -> Any:
    return (
        select(
            project_members.c.project_id, project_members.c.user_id, project_members.c.role,
            project_members.c.added_at, project_members.c.added_by,
            users.c.name, users.c.email, users.c.is_active,
        )
        .select_from(project_members.join(users, users.c.id == project_members.c.user_id))
    )


def _record(row: RowMapping) -> MemberRecord:
    return MemberRecord(
        project_id=row["project_id"], user_id=row["user_id"], role=row["role"],
        name=row["name"], email=row["email"], is_active=bool(row["is_active"]),
        added_at=row["added_at"], added_by=row["added_by"],
    )


def list_members(connection: Connection, project_id: str) -> list[MemberRecord]:
    """The project's members: owners first, then editors, then viewers; by name."""
    rows = connection.execute(
        _select_members()
        .where(project_members.c.project_id == project_id)
        .order_by(_ROLE_RANK, users.c.name, users.c.id)
    ).mappings()
    return [_record(r) for r in rows]


def get_member(connection: Connection, project_id: str, user_id: str) -> MemberRecord | None:
    row = connection.execute(
        _select_members().where(project_members.c.project_id == project_id,
                                project_members.c.user_id == user_id)
    ).mappings().first()
    return None if row is None else _record(row)


def lock_project(connection: Connection, project_id: str) -> bool:
    """Hold the project's row until the transaction ends; False when there is none."""
    found = connection.execute(
        select(projects.c.id).where(projects.c.id == project_id).with_for_update()
    ).first()
    return found is not None


def add_member(
    connection: Connection, project_id: str, user_id: str, role: str, *,
    added_by: str | None, now: datetime,
) -> MemberRecord:
    """Add an active user to the project (the caller locked the project)."""
    user = connection.execute(
        select(users.c.is_active).where(users.c.id == user_id)
    ).first()
    if user is None:
        raise UserNotFound(f"There is no user with id {user_id} (userId).")
    if not user.is_active:
        raise UserInactive(
            f"The user {user_id} is deactivated; an administrator must reactivate the "
            "account before it can join a project.")
    if get_member(connection, project_id, user_id) is not None:
        raise AlreadyMember(
            f"The user {user_id} is a member of this project already; change the role "
            f"with PATCH /api/projects/{project_id}/members/{user_id}.")
    connection.execute(insert(project_members).values(
        project_id=project_id, user_id=user_id, role=role, added_at=now, added_by=added_by,
    ))
    added = get_member(connection, project_id, user_id)
    assert added is not None  # noqa: S101 - inserted just above
    return added


def _other_owners(connection: Connection, project_id: str, user_id: str) -> int:
    return int(connection.execute(
        select(func.count()).select_from(project_members).where(
            project_members.c.project_id == project_id,
            project_members.c.role == "owner",
            project_members.c.user_id != user_id,
        )
    ).scalar_one())


def _refuse_last_owner(connection: Connection, member: MemberRecord, doing: str) -> None:
    if member.role == "owner" and _other_owners(connection, member.project_id,
                                                member.user_id) == 0:
        raise LastOwner(
            f"Cannot {doing} the last owner of this project: make another member an owner "
            "first, so the project keeps one.")


def change_role(
    connection: Connection, project_id: str, user_id: str, role: str
) -> tuple[str, MemberRecord]:
    """Set the member's role (the caller locked the project); (previous role, member)."""
    member = get_member(connection, project_id, user_id)
    if member is None:
        raise NotAMember(f"The user {user_id} is not a member of this project.")
    if role != "owner":
        _refuse_last_owner(connection, member, "demote")
    connection.execute(
        update(project_members)
        .where(project_members.c.project_id == project_id,
               project_members.c.user_id == user_id)
        .values(role=role)
    )
    changed = get_member(connection, project_id, user_id)
    assert changed is not None  # noqa: S101 - updated just above
    return member.role, changed


def remove_member(connection: Connection, project_id: str, user_id: str) -> MemberRecord:
    """Remove the member (the caller locked the project); the membership that went."""
    member = get_member(connection, project_id, user_id)
    if member is None:
        raise NotAMember(f"The user {user_id} is not a member of this project.")
    _refuse_last_owner(connection, member, "remove")
    connection.execute(
        delete(project_members).where(project_members.c.project_id == project_id,
                                      project_members.c.user_id == user_id)
    )
    return member
