"""A project's members and activity: ``/api/projects/{id}/members`` and ``/activity``.

Owners and admins manage members (``installsure.auth.policy``, MANAGE_MEMBERS); whoever
may see the project may list them and read its activity. A project always keeps an
owner: removing or demoting the last one is 409 with what to do instead. Every change
writes an audit row in its transaction, then a business event, the
``installsure.project.<id>.member`` domain event and the Redis "membership changed"
signal the realtime broker listens to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from installsure.api.project_common import (
    TAGS,
    ProjectsDeps,
    actor_json,
    in_transaction,
    member_id,
    principal_of,
)
from installsure.api.project_types import (
    ActivityEntry,
    Actor,
    Member,
    MemberRole,
    NewMember,
    PageQuery,
    RemovedMember,
    Target,
)
from installsure.auth.policy import ProjectAction, require_project
from installsure.auth.principal import Principal
from installsure.db import audit, members
from installsure.db import projects as repo
from installsure.events import project_topic
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError
from installsure.http.routing import Paged, Router
from installsure.logs import business_event


def _member_json(record: members.MemberRecord) -> Member:
    return Member(
        user_id=record.user_id, name=record.name, email=record.email,
        role=record.role,  # type: ignore[arg-type]  # CHECK constraint: one of them
        is_active=record.is_active, added_at=record.added_at, added_by=record.added_by,
    )


def _entry_json(entry: audit.AuditEntry) -> ActivityEntry:
    return ActivityEntry(
        id=str(entry.id), at=entry.at, actor=Actor(entry.actor_id, entry.actor_name),
        action=entry.action, target=Target(entry.target_type, entry.target_id),
        changes=dict(entry.changes) if entry.changes is not None else None,
    )


def _allowed(c: Connection, principal: Principal, project_id: str,
             action: ProjectAction) -> None:
    """404 or 403 unless ``principal`` may do ``action``; members' changes lock the
    project first, so that the last-owner rule holds against concurrent changes."""
    if action is not ProjectAction.VIEW and not members.lock_project(c, project_id):
        require_project(principal, None, action, exists=False)
    record, role = repo.get_project_for(c, project_id, member_id(principal))
    require_project(principal, role, action, exists=record is not None)


def _refused(error: members.MembershipRefused) -> ApiError:
    # A well-formed userId that names nobody is 404 (like an id in a path), one that
    # names a deactivated account 409: the request is fine, the account's state is not.
    if isinstance(error, members.UserNotFound | members.NotAMember):
        return ApiError("NOT_FOUND", str(error))
    return ApiError("CONFLICT", str(error))  # UserInactive, AlreadyMember, LastOwner


class MemberRoutes:
    def __init__(self, deps: ProjectsDeps) -> None:
        self.deps = deps

    async def activity(self, ctx: RequestContext, id: str,
                       query: PageQuery) -> Paged[ActivityEntry]:
        """The project's audit log, newest first."""
        principal = principal_of(ctx)

        def read(c: Connection) -> tuple[list[audit.AuditEntry], int]:
            _allowed(c, principal, id, ProjectAction.VIEW)
            return audit.project_activity(c, id, page=query.page, per_page=query.per_page)

        entries, total = await in_transaction(self.deps, read, readonly=True)
        return Paged([_entry_json(e) for e in entries], query.page, query.per_page, total)

    async def list_members(self, ctx: RequestContext, id: str) -> list[Member]:
        """The project's members: owners, then editors, then viewers."""
        principal = principal_of(ctx)

        def read(c: Connection) -> list[members.MemberRecord]:
            _allowed(c, principal, id, ProjectAction.VIEW)
            return members.list_members(c, id)

        return [_member_json(m) for m in await in_transaction(self.deps, read, readonly=True)]

    async def add_member(self, ctx: RequestContext, id: str, body: NewMember) -> Member:
        """Add an active user with a project role (owners and admins); 404 when no
        user has that id, 409 when the account is deactivated or a member already."""
        principal = principal_of(ctx)
        user_id = body.user_id.strip()

        def add(c: Connection) -> members.MemberRecord:
            _allowed(c, principal, id, ProjectAction.MANAGE_MEMBERS)
            now = datetime.now(UTC)
            try:
                added = members.add_member(c, id, user_id, body.role,
                                           added_by=member_id(principal), now=now)
            except members.MembershipRefused as e:
                raise _refused(e) from None
            audit.record(c, actor=principal, action="member.added", target_type="user",
                         target_id=user_id, project_id=id, changes={"role": [None, body.role]},
                         request_id=ctx.request_id, at=now)
            return added

        added = await in_transaction(self.deps, add)
        self._announce(ctx, principal, id, user_id, ("added", body.role, None))
        return _member_json(added)

    async def change_member(self, ctx: RequestContext, id: str, userId: str,
                            body: MemberRole) -> Member:
        """Give a member another role (owners and admins); the last owner stays one."""
        principal = principal_of(ctx)

        def change(c: Connection) -> tuple[str, members.MemberRecord]:
            _allowed(c, principal, id, ProjectAction.MANAGE_MEMBERS)
            try:
                before, changed = members.change_role(c, id, userId, body.role)
            except members.MembershipRefused as e:
                raise _refused(e) from None
            if before != body.role:
                audit.record(c, actor=principal, action="member.role_changed",
                             target_type="user", target_id=userId, project_id=id,
                             changes={"role": [before, body.role]}, request_id=ctx.request_id)
            return before, changed

        before, changed = await in_transaction(self.deps, change)
        if before != body.role:
            self._announce(ctx, principal, id, userId, ("role", body.role, before))
        return _member_json(changed)

    async def remove_member(self, ctx: RequestContext, id: str,
                            userId: str) -> RemovedMember:
        """Remove a member (owners and admins); the last owner cannot be removed."""
        principal = principal_of(ctx)

        def remove(c: Connection) -> members.MemberRecord:
            _allowed(c, principal, id, ProjectAction.MANAGE_MEMBERS)
            try:
                gone = members.remove_member(c, id, userId)
            except members.MembershipRefused as e:
                raise _refused(e) from None
            audit.record(c, actor=principal, action="member.removed", target_type="user",
                         target_id=userId, project_id=id, changes={"role": [gone.role, None]},
                         request_id=ctx.request_id)
            return gone

        gone = await in_transaction(self.deps, remove)
        self._announce(ctx, principal, id, userId, ("removed", None, gone.role))
        return RemovedMember(project_id=id, user_id=userId, removed=True)

    def _announce(self, ctx: RequestContext, principal: Principal, project_id: str,
                  user_id: str, what: tuple[str, str | None, str | None]) -> None:
        """After the commit: business event, domain event, membership signal. ``what``
        is (change, new role, previous role)."""
        change, role, previous = what
        kind = {"added": "member.added", "role": "member.role_changed",
                "removed": "member.removed"}[change]
        business_event(f"project.{kind.replace('.', '_')}", projectId=project_id,
                       userId=principal.id, memberId=user_id, role=role, previousRole=previous,
                       requestId=ctx.request_id)
        payload: dict[str, Any] = {
            "type": kind, "projectId": project_id, "userId": user_id, "role": role,
            "previousRole": previous, "actor": actor_json(principal),
        }
        self.deps.events.publish(project_topic(project_id, "member"), payload)
        self.deps.signals.changed(project_id, user_id, change, role)


def member_routes(deps: ProjectsDeps) -> Router:
    routes = MemberRoutes(deps)
    router = Router()
    router.add("GET", "/api/projects/{id}/activity", routes.activity, query=PageQuery,
               response=Paged[ActivityEntry], auth="user", tags=TAGS, errors=(404, 503),
               summary="The project's audit log, newest first", operation_id="project_activity")
    router.add("GET", "/api/projects/{id}/members", routes.list_members, response=list[Member],
               auth="user", tags=TAGS, errors=(404, 503), summary="The project's members",
               operation_id="list_members")
    router.add("POST", "/api/projects/{id}/members", routes.add_member, body=NewMember,
               response=Member, status=201, auth="user", tags=TAGS, errors=(403, 404, 409, 503),
               summary="Add a member (owners, admins)", operation_id="add_member")
    router.add("PATCH", "/api/projects/{id}/members/{userId}", routes.change_member,
               body=MemberRole, response=Member, auth="user", tags=TAGS,
               errors=(403, 404, 409, 503), summary="Change a member's role (owners, admins)",
               operation_id="change_member")
    router.add("DELETE", "/api/projects/{id}/members/{userId}", routes.remove_member,
               response=RemovedMember, auth="user", tags=TAGS, errors=(403, 404, 409, 503),
               summary="Remove a member (owners, admins)", operation_id="remove_member")
    return router
