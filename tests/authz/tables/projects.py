"""Projects, their members and activity (installsure.api.projects).

Global roles: admins do everything everywhere; managers see and edit every project
but delete or manage members only where they own the project; members work in the
projects they belong to; viewers read what they belong to, even as its owner. A
project the caller may not see is 404, like one that does not exist.
"""

import uuid

from tests.authz.matrix import Entry, Situation, by_role, project_statuses, statuses


def _project(s: Situation) -> dict[str, str]:
    return {"id": s.project_id}


def _member(s: Situation) -> dict[str, str]:
    return {"id": s.project_id, "userId": s.editor_id}


def _new_name(_s: Situation) -> dict[str, str]:
    return {"name": f"Matrix {uuid.uuid4()}"}


READ = project_statuses(
    own=by_role(viewer=200, member=200, manager=200, admin=200),
    other=by_role(viewer=404, member=404, manager=200, admin=200),
)
EDIT = project_statuses(
    own=by_role(viewer=403, member=200, manager=200, admin=200),
    other=by_role(viewer=404, member=404, manager=200, admin=200),
)
OWNERS = project_statuses(  # delete the project, manage its members
    own=by_role(viewer=403, member=200, manager=200, admin=200),
    other=by_role(viewer=404, member=404, manager=403, admin=200),
)
ADD_MEMBER = project_statuses(
    own=by_role(viewer=403, member=201, manager=201, admin=201),
    other=by_role(viewer=404, member=404, manager=403, admin=201),
)

ENTRIES = [
    Entry("GET", "/api/projects", {"-": statuses(200)}),
    Entry("POST", "/api/projects", {"-": statuses(201, viewer=403, operator=403)},
          body=_new_name),
    Entry("GET", "/api/projects/{id}", READ, params=_project),
    Entry("PUT", "/api/projects/{id}", EDIT, params=_project, body=_new_name),
    Entry("PATCH", "/api/projects/{id}", EDIT, params=_project,
          body=lambda _s: {"progress": 42}),
    Entry("DELETE", "/api/projects/{id}", OWNERS, params=_project),
    Entry("GET", "/api/projects/{id}/activity", READ, params=_project),
    Entry("GET", "/api/projects/{id}/members", READ, params=_project),
    Entry("POST", "/api/projects/{id}/members", ADD_MEMBER, params=_project,
          body=lambda s: {"userId": s.outsider_id, "role": "viewer"}),
    Entry("PATCH", "/api/projects/{id}/members/{userId}", OWNERS, params=_member,
          body=lambda _s: {"role": "viewer"}),
    Entry("DELETE", "/api/projects/{id}/members/{userId}", OWNERS, params=_member),
]
