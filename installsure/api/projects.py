"""Projects (the contract's "Projects" section): list, create, read, replace, change,
delete; their members and activity come from :mod:`installsure.api.project_members`.

Each route does its reading, the authorization decision (``installsure.auth.policy``:
404 for a project the caller may not see, 403 for one it may see but not change), the
change and its audit row in ONE transaction on the database pool. Once that committed,
the business-log event, the domain event (``installsure.project.<id>.*``) and, for
membership, the Redis signal go out; none of them can fail the request.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from twisted.logger import Logger

from installsure.api.project_common import (
    ETAG_DOC,
    IF_MATCH_DOC,
    LOCATION_DOC,
    TAGS,
    FilesDeletedHook,
    ProjectsDeps,
    actor_json,
    changes_between,
    etag,
    in_transaction,
    member_id,
    parse_if_match,
    principal_of,
    project_json,
    raw_if_match,
    stale,
)
from installsure.api.project_members import member_routes
from installsure.api.project_types import (
    DeletedProject,
    Project,
    ProjectFields,
    ProjectPatch,
    ProjectsQuery,
)
from installsure.auth.membership import MembershipSignals
from installsure.auth.policy import (
    ProjectAction,
    can_create_project,
    may_see_all_projects,
    require_project,
)
from installsure.auth.principal import Principal
from installsure.db import audit
from installsure.db import projects as repo
from installsure.db.service import Database
from installsure.events import DomainEventPublisher, project_topic
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError, FieldError, validation_error
from installsure.http.jsonbody import parse_json
from installsure.http.routing import Paged, Response, Router
from installsure.http.validation import camel, unstructure
from installsure.logs import business_event

log = Logger(namespace="installsure.api.projects")

_WRITE_ERRORS = (403, 404, 409, 412, 503)


def _values(body: ProjectFields | ProjectPatch, present: set[str] | None = None) -> dict[str, Any]:
    """The body's fields as column values (``present``: only these wire names)."""
    values = {}
    for name in repo.EDITABLE_FIELDS:
        if present is not None and camel(name) not in present:
            continue
        values[name] = getattr(body, name)
    if isinstance(values.get("name"), str):
        values["name"] = values["name"].strip()
    return values


def _present_fields(ctx: RequestContext) -> set[str]:
    """The wire names the PATCH body carried (null included): the framework has parsed
    and validated it already, so reading it again cannot fail."""
    content = ctx.request.content
    content.seek(0)
    data = parse_json(content.read())
    return set(data) if isinstance(data, dict) else set()


def _name_conflict(name: str) -> ApiError:
    return ApiError(
        "CONFLICT",
        f"A project named {name!r} exists already (names are compared ignoring case); "
        "choose another name.",
    )


def _with_etag(record: repo.ProjectRecord, status: int = 200,
               extra: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    return Response(project_json(record), status=status,
                    headers=((b"ETag", etag(record)), *extra))


class ProjectRoutes:
    """The handlers, over :class:`ProjectsDeps`."""

    def __init__(self, deps: ProjectsDeps) -> None:
        self.deps = deps

    # -- reading ---------------------------------------------------------------------

    async def list_projects(self, ctx: RequestContext, query: ProjectsQuery) -> Paged[Project]:
        """Projects the caller may see (admins and managers: all), filtered, sorted and
        paged."""
        principal = principal_of(ctx)
        visible_to = None if may_see_all_projects(principal) else member_id(principal)
        if visible_to is None and not may_see_all_projects(principal):
            # A service principal below manager: no user row, so a member of nothing.
            return Paged([], query.page, query.per_page, 0)
        rows, total = await in_transaction(self.deps, lambda c: repo.list_projects(
            c, member_id=visible_to, status=query.status, q=query.q, sort=query.sort,
            page=query.page, per_page=query.per_page,
        ), readonly=True)
        return Paged([project_json(r) for r in rows], query.page, query.per_page, total)

    async def get_project(self, ctx: RequestContext, id: str) -> Response:
        """One project, with its ETag; 404 when it does not exist or is not visible."""
        principal = principal_of(ctx)

        def read(c: Connection) -> repo.ProjectRecord:
            record, role = repo.get_project_for(c, id, member_id(principal))
            require_project(principal, role, ProjectAction.VIEW, exists=record is not None)
            assert record is not None  # noqa: S101 - require_project refused otherwise
            return record

        return _with_etag(await in_transaction(self.deps, read, readonly=True))

    # -- changing --------------------------------------------------------------------

    async def create_project(self, ctx: RequestContext, body: ProjectFields) -> Response:
        """Create a project; the caller becomes its owner."""
        principal = principal_of(ctx)
        if not can_create_project(principal):
            raise ApiError("FORBIDDEN", "Your role does not allow creating projects.")
        if principal.is_service:
            raise ApiError(
                "FORBIDDEN", "A project needs an owner, and the service principal cannot be "
                "one: create projects as a user.")
        values = _values(body)
        project_id = str(uuid.uuid4())

        def create(c: Connection) -> repo.ProjectRecord:
            now = datetime.now(UTC)
            try:
                record = repo.create_project(c, project_id, values, owner_id=principal.id,
                                             now=now)
            except repo.ProjectNameTaken:
                raise _name_conflict(values["name"]) from None
            audit.record(c, actor=principal, action="project.created", target_type="project",
                         target_id=project_id, project_id=project_id,
                         changes=changes_between(None, values), request_id=ctx.request_id,
                         at=now)
            return record

        record = await in_transaction(self.deps, create)
        business_event("project.created", projectId=record.id, userId=principal.id,
                       name=record.name, requestId=ctx.request_id)
        self.deps.signals.changed(record.id, principal.id, "added", "owner")
        location = f"/api/projects/{record.id}".encode("ascii")
        return _with_etag(record, 201, ((b"Location", location),))

    async def replace_project(self, ctx: RequestContext, id: str, body: ProjectFields) -> Response:
        """Replace every field (a field left out takes its default)."""
        return await self._update(ctx, id, _values(body))

    async def change_project(self, ctx: RequestContext, id: str, body: ProjectPatch) -> Response:
        """Change the fields the body names; null clears an optional field."""
        present = _present_fields(ctx)
        return await self._update(ctx, id, _values(body, present))

    async def _update(self, ctx: RequestContext, project_id: str,
                      values: dict[str, Any]) -> Response:
        principal = principal_of(ctx)
        precondition = raw_if_match(ctx)

        def update(c: Connection) -> tuple[repo.ProjectRecord, dict[str, list[Any]]]:
            record = _locked_for(c, principal, project_id, ProjectAction.EDIT)
            expected = _expected_version(precondition, record)
            _check_dates(record, values)
            changes = changes_between(record, values)
            if not changes:
                return record, changes  # nothing to change: no new version, no audit row
            now = datetime.now(UTC)
            try:
                updated = repo.update_project(c, project_id, values,
                                              expected_version=expected, now=now)
            except repo.ProjectNameTaken:
                raise _name_conflict(values["name"]) from None
            except repo.ProjectVersionMismatch:
                current = repo.get_project(c, project_id)
                assert current is not None  # noqa: S101 - the row is locked
                raise stale(current) from None
            audit.record(c, actor=principal, action="project.updated", target_type="project",
                         target_id=project_id, project_id=project_id, changes=changes,
                         request_id=ctx.request_id, at=now)
            return updated, changes

        record, changes = await in_transaction(self.deps, update)
        if changes:
            business_event("project.updated", projectId=project_id, userId=principal.id,
                           fields=sorted(changes), version=record.version,
                           requestId=ctx.request_id)
            self.deps.events.publish(project_topic(project_id, "updated"), {
                "type": "project.updated", "projectId": project_id, "version": record.version,
                "changes": changes, "project": _project_payload(record),
                "actor": actor_json(principal),
            })
        return _with_etag(record)

    async def delete_project(self, ctx: RequestContext, id: str) -> DeletedProject:
        """Delete the project with its members and files (owners and admins)."""
        principal = principal_of(ctx)
        precondition = raw_if_match(ctx)

        def remove(c: Connection) -> list[repo.DeletedFile]:
            record = _locked_for(c, principal, id, ProjectAction.DELETE)
            expected = _expected_version(precondition, record)
            gone = repo.delete_project(c, id, expected_version=expected)
            audit.record(c, actor=principal, action="project.deleted", target_type="project",
                         target_id=id, project_id=id,
                         changes={"name": [record.name, None]}, request_id=ctx.request_id)
            return gone

        files = await in_transaction(self.deps, remove)
        business_event("project.deleted", projectId=id, userId=principal.id,
                       files=len(files), requestId=ctx.request_id)
        self.deps.events.publish(project_topic(id, "deleted"), {
            "type": "project.deleted", "projectId": id, "actor": actor_json(principal),
        })
        self.deps.signals.changed(id, None, "deleted", None)
        if self.deps.files_deleted is not None and files:
            try:
                self.deps.files_deleted(id, files)
            except Exception:  # the project is gone either way; its bytes are the hook's job
                log.failure("removing the stored files of deleted project {project_id} "
                            "failed", project_id=id)
        return DeletedProject(id=id)


def _project_payload(record: repo.ProjectRecord) -> dict[str, Any]:
    return unstructure(project_json(record))  # type: ignore[no-any-return]


def _locked_for(c: Connection, principal: Principal, project_id: str,
                action: ProjectAction) -> repo.ProjectRecord:
    record, role = repo.get_project_for(c, project_id, member_id(principal), lock=True)
    require_project(principal, role, action, exists=record is not None)
    assert record is not None  # noqa: S101 - require_project refused otherwise
    return record


def _expected_version(if_match: str | None, record: repo.ProjectRecord) -> int:
    """The version the change may apply to (or 400/412 from If-Match); without If-Match
    the version just read (the row is locked until the change commits)."""
    precondition = parse_if_match(if_match)
    return record.version if precondition is None else precondition.expected_version(record)


def _check_dates(record: repo.ProjectRecord, values: dict[str, Any]) -> None:
    start = values.get("start_date", record.start_date)
    end = values.get("end_date", record.end_date)
    if start is not None and end is not None and end < start:
        field = "endDate" if "end_date" in values else "startDate"
        other = "startDate" if field == "endDate" else "endDate"
        message = (f"must not be before {other} ({start.isoformat()})" if field == "endDate"
                   else f"must not be after {other} ({end.isoformat()})")
        raise validation_error([FieldError(field, message)])


def projects_router(
    database: Database,
    *,
    events: DomainEventPublisher,
    signals: MembershipSignals,
    files_deleted: FilesDeletedHook | None = None,
) -> Router:
    """The routes of ``/api/projects``, members and activity included."""
    deps = ProjectsDeps.create(database, events, signals, files_deleted)
    routes = ProjectRoutes(deps)
    router = Router()
    router.add("GET", "/api/projects", routes.list_projects, query=ProjectsQuery,
               response=Paged[Project], auth="user", tags=TAGS, errors=(503,),
               summary="Projects you may see, filtered, sorted and paged",
               operation_id="list_projects")
    router.add("POST", "/api/projects", routes.create_project, body=ProjectFields,
               response=Project, status=201, auth="user", tags=TAGS, errors=(403, 409, 503),
               response_headers=(ETAG_DOC, LOCATION_DOC),
               summary="Create a project; you become its owner", operation_id="create_project")
    router.add("GET", "/api/projects/{id}", routes.get_project, response=Project, auth="user",
               tags=TAGS, errors=(404, 503), response_headers=(ETAG_DOC,),
               summary="One project and its ETag", operation_id="get_project")
    router.add("PUT", "/api/projects/{id}", routes.replace_project, body=ProjectFields,
               response=Project, auth="user", tags=TAGS, errors=_WRITE_ERRORS,
               request_headers=(IF_MATCH_DOC,), response_headers=(ETAG_DOC,),
               summary="Replace a project (owners, editors, managers, admins)",
               operation_id="replace_project")
    router.add("PATCH", "/api/projects/{id}", routes.change_project, body=ProjectPatch,
               response=Project, auth="user", tags=TAGS, errors=_WRITE_ERRORS,
               request_headers=(IF_MATCH_DOC,), response_headers=(ETAG_DOC,),
               summary="Change some fields of a project (owners, editors, managers, admins)",
               operation_id="change_project")
    router.add("DELETE", "/api/projects/{id}", routes.delete_project, response=DeletedProject,
               auth="user", tags=TAGS, errors=(403, 404, 412, 503),
               request_headers=(IF_MATCH_DOC,),
               summary="Delete a project with its members and files (owners, admins)",
               operation_id="delete_project")
    router.include(member_routes(deps))
    return router
