"""Authorization: what each global and project role may do, in one place.

Every route asks here; nothing else compares role names. Decisions are pure functions
of the principal and its role in the project concerned (looked up by the caller), so
they are tested exhaustively and the realtime broker asks the same questions.

Visibility before permission: a project the principal may not see answers 404, as if it
did not exist (its existence is not leaked); one it may see but not change answers 403.

Global roles, strongest first: ``admin`` (everything), ``manager`` (sees and edits every
project, manages no accounts), ``member`` (creates projects, works in those it belongs
to), ``viewer`` (read-only: even as a project editor or owner it changes nothing).
Project roles: ``owner`` (edits, deletes, manages members), ``editor`` (edits the project
and its files), ``viewer`` (reads).

A file of a project is seen by those who may view the project and deleted by those who
may delete its files, and by its uploader while it can see the file; a file without a
project belongs to its uploader (and admins).
"""

from __future__ import annotations

import enum

from installsure.auth.principal import Principal
from installsure.db.tables import GLOBAL_ROLES, PROJECT_ROLES
from installsure.http.errors import ApiError

__all__ = [
    "GLOBAL_ROLES",
    "PROJECT_ROLES",
    "ProjectAction",
    "allows_global",
    "can_create_project",
    "file_permits",
    "may_manage_users",
    "may_see_all_projects",
    "project_permits",
    "require_file",
    "require_project",
]


class ProjectAction(enum.Enum):
    """What a request does to a project (or to a file of it)."""

    VIEW = "view"  # read the project, its members, activity and files
    EDIT = "edit"  # change the project's fields; upload files
    DELETE = "delete"  # delete the project (and its files)
    MANAGE_MEMBERS = "manage_members"  # add, remove, change members
    DELETE_FILE = "delete_file"  # delete a file of the project


def allows_global(principal: Principal, requirement: str) -> bool:
    """``"user"``: anyone signed in; a global role: that role or a stronger one."""
    if requirement == "user":
        return True
    if requirement not in GLOBAL_ROLES or principal.role not in GLOBAL_ROLES:
        return False
    return GLOBAL_ROLES.index(principal.role) <= GLOBAL_ROLES.index(requirement)


def may_see_all_projects(principal: Principal) -> bool:
    return principal.role in ("admin", "manager")


def may_manage_users(principal: Principal) -> bool:
    return principal.role == "admin"


def can_create_project(principal: Principal) -> bool:
    return principal.role in ("admin", "manager", "member")


def project_permits(
    principal: Principal, project_role: str | None, action: ProjectAction
) -> bool:
    """May ``principal``, whose role in the project is ``project_role`` (None: not a
    member), do ``action``?"""
    if principal.role == "admin":
        return True
    if principal.role not in GLOBAL_ROLES:
        return False
    if action is ProjectAction.VIEW:
        return may_see_all_projects(principal) or project_role in PROJECT_ROLES
    if principal.role == "viewer":
        return False  # a read-only account stays read-only in every project
    if action in (ProjectAction.EDIT, ProjectAction.DELETE_FILE):
        return principal.role == "manager" or project_role in ("owner", "editor")
    # DELETE and MANAGE_MEMBERS: the project's owners (and admins, above).
    return project_role == "owner"


def require_project(
    principal: Principal, project_role: str | None, action: ProjectAction, *,
    exists: bool = True,
) -> None:
    """Raise the API error for a refused ``action``: 404 ``NOT_FOUND`` when the project
    does not exist or the principal may not see it, 403 ``FORBIDDEN`` when it may see
    it but not do this."""
    if not exists or not project_permits(principal, project_role, ProjectAction.VIEW):
        raise ApiError("NOT_FOUND", "No such project.")
    if not project_permits(principal, project_role, action):
        raise ApiError(
            "FORBIDDEN",
            f"Your role does not allow this ({action.value}) in this project: ask one of "
            "its owners or an administrator.",
        )


def file_permits(
    principal: Principal, action: ProjectAction, *, project_id: str | None,
    uploaded_by: str | None, project_role: str | None,
) -> bool:
    """May ``principal`` do ``action`` (``VIEW`` or ``DELETE_FILE``) to a file of
    ``project_id`` (None: of no project) that ``uploaded_by`` uploaded, ``project_role``
    being its role in that project?"""
    own = not principal.is_service and uploaded_by is not None and uploaded_by == principal.id
    if project_id is None:
        return own or principal.role == "admin"
    if not project_permits(principal, project_role, ProjectAction.VIEW):
        return False
    return action is ProjectAction.VIEW or own or project_permits(
        principal, project_role, action)


def require_file(
    principal: Principal, action: ProjectAction, *, exists: bool, project_id: str | None,
    uploaded_by: str | None, project_role: str | None,
) -> None:
    """Raise the API error for a refused ``action`` on a file: 404 ``NOT_FOUND`` when
    it does not exist or the principal may not see it, 403 ``FORBIDDEN`` when it may
    see it but not do this."""
    facts = {"project_id": project_id, "uploaded_by": uploaded_by,
             "project_role": project_role}
    if not exists or not file_permits(principal, ProjectAction.VIEW, **facts):
        raise ApiError("NOT_FOUND", "No such file.")
    if not file_permits(principal, action, **facts):
        # Only files of a project get here: one of no project is seen by its uploader
        # and admins, who may do anything to it.
        raise ApiError(
            "FORBIDDEN",
            f"Your role does not allow this ({action.value}) in this file's project: ask "
            "its uploader, one of the project's owners or an administrator.",
        )
