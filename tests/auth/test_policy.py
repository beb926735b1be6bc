"""The authorization policy: every global role x project role x action, and the
404-before-403 rule."""

from __future__ import annotations

import pytest

from installsure.auth.policy import (
    ProjectAction,
    allows_global,
    can_create_project,
    project_permits,
    require_project,
)
from installsure.auth.principal import Principal
from installsure.db.tables import GLOBAL_ROLES, PROJECT_ROLES
from installsure.http.errors import ApiError

V, E, D, M, F = (ProjectAction.VIEW, ProjectAction.EDIT, ProjectAction.DELETE,
                 ProjectAction.MANAGE_MEMBERS, ProjectAction.DELETE_FILE)

#: (global role, project role) -> the actions allowed; written out by hand from the
#: policy's docstring so a change to either shows up here.
EXPECTED: dict[tuple[str, str | None], set[ProjectAction]] = {
    ("admin", None): {V, E, D, M, F},
    ("admin", "viewer"): {V, E, D, M, F},
    ("manager", None): {V, E, F},
    ("manager", "viewer"): {V, E, F},
    ("manager", "editor"): {V, E, F},
    ("manager", "owner"): {V, E, D, M, F},
    ("member", None): set(),
    ("member", "viewer"): {V},
    ("member", "editor"): {V, E, F},
    ("member", "owner"): {V, E, D, M, F},
    ("viewer", None): set(),
    ("viewer", "viewer"): {V},
    ("viewer", "editor"): {V},
    ("viewer", "owner"): {V},
}


@pytest.mark.parametrize("global_role", GLOBAL_ROLES)
@pytest.mark.parametrize("project_role", [None, *PROJECT_ROLES])
@pytest.mark.parametrize("action", list(ProjectAction))
def test_every_role_pair_and_action(
    global_role: str, project_role: str | None, action: ProjectAction
) -> None:
    """Each combination is allowed exactly when the table says so (admin rows not
    listed for every project role are the admin's: everything)."""
    allowed = EXPECTED.get((global_role, project_role))
    if allowed is None:
        assert global_role == "admin"
        allowed = set(ProjectAction)
    principal = Principal(id="u1", role=global_role)
    assert project_permits(principal, project_role, action) is (action in allowed)


def test_unknown_global_role_is_allowed_nothing() -> None:
    """A role outside the list (a corrupted row, an old token) gets no access at all."""
    principal = Principal(id="u1", role="superuser")
    assert not any(project_permits(principal, "owner", action) for action in ProjectAction)
    assert not allows_global(principal, "viewer")
    assert not can_create_project(principal)


def test_invisible_project_is_404_and_visible_but_refused_is_403() -> None:
    """A project the caller may not see is reported as absent; one it sees but may not
    change is forbidden; a missing project is absent for admins too."""
    member = Principal(id="u1", role="member")
    with pytest.raises(ApiError) as hidden:
        require_project(member, None, ProjectAction.EDIT)
    assert hidden.value.code == "NOT_FOUND"
    with pytest.raises(ApiError) as refused:
        require_project(member, "viewer", ProjectAction.EDIT)
    assert refused.value.code == "FORBIDDEN"
    require_project(member, "editor", ProjectAction.EDIT)
    with pytest.raises(ApiError) as missing:
        require_project(Principal(id="a", role="admin"), None, ProjectAction.VIEW, exists=False)
    assert missing.value.code == "NOT_FOUND"


@pytest.mark.parametrize(
    ("role", "requirement", "expected"),
    [("admin", "manager", True), ("manager", "admin", False), ("viewer", "user", True),
     ("member", "member", True), ("viewer", "member", False), ("admin", "nonsense", False)],
)
def test_global_requirements_rank_roles(role: str, requirement: str, expected: bool) -> None:
    """A route's ``auth=`` requirement admits that role and the stronger ones."""
    assert allows_global(Principal(id="u", role=role), requirement) is expected


def test_only_members_and_above_create_projects() -> None:
    """Viewers are read-only accounts: they cannot create projects."""
    assert [can_create_project(Principal(id="u", role=r)) for r in GLOBAL_ROLES] == [
        True, True, True, False]
