"""Project membership over the database, and the "membership changed" signal.

:class:`DatabaseProjectAccess` implements :class:`~installsure.auth.interfaces.ProjectAccess`
for the HTTP routes of other parts (files) and for the realtime broker, which asks it
whether a principal may receive a topic's events. It answers from the database every
time (one indexed lookup on the DB pool): membership changes take effect on the next
question, and the broker hears about them at once through :class:`MembershipSignals`.

Topics decided here:

``installsure.project.<projectId>.<anything>``
    whoever may view the project (its members; admins and managers see every project).
    An empty id (``installsure.project..updated``, a wildcard over every project) only
    for those who see every project.
``installsure.file.<fileId>.<anything>``
    whoever may view the file's project; a file without a project, its uploader and
    admins.

Any other topic is False here: the broker's static rules decide it.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, select
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.auth.interfaces import MEMBERSHIP_CHANGED_CHANNEL
from installsure.auth.policy import (
    ProjectAction,
    file_permits,
    may_see_all_projects,
    project_permits,
    require_project,
)
from installsure.auth.principal import Principal
from installsure.db.files import get_file_for
from installsure.db.projects import role_of
from installsure.db.service import Database
from installsure.db.tables import projects
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.auth.membership")

PROJECT_TOPIC_PREFIX = "installsure.project."
FILE_TOPIC_PREFIX = "installsure.file."


def _project_exists(connection: Connection, project_id: str) -> bool:
    return connection.execute(
        select(projects.c.id).where(projects.c.id == project_id)
    ).first() is not None


def _may_view_project(connection: Connection, principal: Principal, project_id: str) -> bool:
    if not _project_exists(connection, project_id):
        return False
    role = None if principal.is_service else role_of(connection, project_id, principal.id)
    return project_permits(principal, role, ProjectAction.VIEW)


def _may_view_file(connection: Connection, principal: Principal, file_id: str) -> bool:
    row, role = get_file_for(connection, file_id, None if principal.is_service else principal.id)
    return row is not None and file_permits(
        principal, ProjectAction.VIEW, project_id=row.project_id,
        uploaded_by=row.uploaded_by, project_role=role)


def _subject(topic: str, prefix: str) -> str | None:
    """The id segment of ``prefix<id>.<rest>`` (``""`` for a wildcard), or None when
    ``topic`` does not have that shape."""
    if not topic.startswith(prefix):
        return None
    subject, dot, _rest = topic[len(prefix):].partition(".")
    return subject if dot else None


class DatabaseProjectAccess:
    """:class:`~installsure.auth.interfaces.ProjectAccess` over the database."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def project_role(self, principal: Principal, project_id: str) -> Deferred[str | None]:
        if principal.is_service:
            return succeed(None)  # no user row, so never a member (its global role rules)
        return self._database.run(
            lambda connection: role_of(connection, project_id, principal.id), readonly=True
        )

    def require(
        self, principal: Principal, project_id: str, action: ProjectAction
    ) -> Deferred[str | None]:
        """The principal's role in the project if it may do ``action`` there; else a
        failure with the policy's ApiError (404 when the project does not exist or is
        not visible to it, 403 when it is but the role does not allow ``action``)."""

        def decide(connection: Connection) -> str | None:
            exists = _project_exists(connection, project_id)
            role = None
            if exists and not principal.is_service:
                role = role_of(connection, project_id, principal.id)
            require_project(principal, role, action, exists=exists)
            return role

        return self._database.run(decide, readonly=True)

    def may_subscribe(self, principal: Principal, topic: str) -> Deferred[bool]:
        project_id = _subject(topic, PROJECT_TOPIC_PREFIX)
        if project_id == "":
            return succeed(may_see_all_projects(principal))
        if project_id is not None:
            return self._database.run(
                lambda connection: _may_view_project(connection, principal, project_id),
                readonly=True,
            )
        file_id = _subject(topic, FILE_TOPIC_PREFIX)
        if file_id:
            return self._database.run(
                lambda connection: _may_view_file(connection, principal, file_id),
                readonly=True,
            )
        return succeed(False)


class MembershipSignals:
    """Publishes "membership changed" on ``MEMBERSHIP_CHANGED_CHANNEL`` through Redis.

    Called after the change committed. A signal that cannot be sent (Redis away) is
    logged, never raised: the change stands, and subscribers re-check membership on
    their next question anyway.
    """

    def __init__(self, redis: RedisCommands | None) -> None:
        self._redis = redis

    def changed(
        self, project_id: str, user_id: str | None, change: str, role: str | None
    ) -> Deferred[None]:
        """``change`` is ``added``, ``removed``, ``role`` or ``deleted`` (``user_id``
        None: the whole project went)."""
        message = json.dumps({"projectId": project_id, "userId": user_id, "change": change,
                              "role": role}, separators=(",", ":"))
        if self._redis is None:
            return succeed(None)

        def failed(failure: Failure) -> None:
            log.warn(
                "membership change of project {project_id} ({change}) not signalled: "
                "{error}", project_id=project_id, change=change,
                error=failure.getErrorMessage(),
            )

        d: Deferred[None] = self._redis.publish(MEMBERSHIP_CHANGED_CHANNEL, message) \
            .addCallback(lambda _receivers: None)
        return d.addErrback(failed)
