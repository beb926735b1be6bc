"""The authorization policy: every global role x project role x action, and the
404-before-403 rule."""

from __future__ import annotations

import pytest

from installsure.auth.policy import (
    ProjectAction,
    allows_global,
    can_create_project,
    file_permits,
    project_permits,
    require_file,
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


#: (global role, project role, the caller uploaded it) -> what it may do to a file of a
#: project: (view, delete). By hand from the policy's docstring.
FILE_EXPECTED: dict[tuple[str, str | None, bool], tuple[bool, bool]] = {
    ("admin", None, False): (True, True),
    ("manager", None, False): (True, True),
    ("member", None, False): (False, False),
    ("member", None, True): (False, False),  # no longer a member: gone from view
    ("member", "viewer", False): (True, False),
    ("member", "viewer", True): (True, True),
    ("member", "editor", False): (True, True),
    ("viewer", "editor", False): (True, False),
    ("viewer", "owner", True): (True, True),
    ("viewer", None, True): (False, False),
}


@pytest.mark.parametrize(("global_role", "project_role", "own"), list(FILE_EXPECTED))
def test_files_of_a_project(global_role: str, project_role: str | None, own: bool) -> None:
    """A project's file is seen by whoever may view the project, deleted by those who
    may delete its files and by its uploader while it still sees the file; refusals
    are 404 when it is not seen, else 403."""
    principal = Principal(id="u1", role=global_role)
    facts = {"project_id": "p1", "uploaded_by": "u1" if own else "u2",
             "project_role": project_role}
    sees, deletes = FILE_EXPECTED[global_role, project_role, own]
    assert file_permits(principal, V, **facts) is sees
    assert file_permits(principal, F, **facts) is deletes
    for action, allowed in ((V, sees), (F, deletes)):
        if allowed:
            require_file(principal, action, exists=True, **facts)
            continue
        with pytest.raises(ApiError) as refused:
            require_file(principal, action, exists=True, **facts)
        assert refused.value.code == ("FORBIDDEN" if sees else "NOT_FOUND")


@pytest.mark.parametrize("role", GLOBAL_ROLES)
def test_files_of_no_project_are_their_uploaders_and_the_admins(role: str) -> None:
    """A file without a project: its uploader may see and delete it whatever its role,
    so may admins; anyone else (managers too, and the operator's own uploads, which
    have no uploader) gets 404, and a missing file is 404 to everyone."""
    principal = Principal(id="u1", role=role)
    for uploader, allowed in (("u1", True), ("u2", role == "admin"), (None, role == "admin")):
        for action in (V, F):
            facts = {"project_id": None, "uploaded_by": uploader, "project_role": None}
            assert file_permits(principal, action, **facts) is allowed
    service = Principal(id="u1", role="member", kind="service")
    assert not file_permits(service, V, project_id=None, uploaded_by="u1", project_role=None)
    with pytest.raises(ApiError, match="No such file"):
        require_file(Principal(id="a", role="admin"), V, exists=False, project_id=None,
                     uploaded_by=None, project_role=None)
