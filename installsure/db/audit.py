"""The audit log: who changed what and when, one append-only row per change.

:func:`record` is the one writer of ``audit_log`` rows: account changes
(:mod:`installsure.auth.audit`), projects and their members, files. Writers call it
inside the transaction that makes the change (through ``Database.run``), so a change and
its audit row commit or roll back together; the business-log event of the change is the
caller's, after the commit. Readers page through a project's history with
:func:`project_activity`, newest first.

``changes`` is ``{field: [before, after]}`` with JSON values (dates as ISO strings,
money as numbers) in the API's camelCase names, because clients read it back as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from attrs import frozen
from sqlalchemy import Connection, func, insert, select

from installsure.auth.principal import Principal
from installsure.db.tables import audit_log, users


@frozen
class AuditEntry:
    """One row of the audit log, as read back."""

    id: int
    at: datetime
    actor_id: str | None
    actor_name: str | None
    project_id: str | None
    action: str
    target_type: str
    target_id: str
    changes: Mapping[str, Any] | None
    request_id: str | None


#: The actor named in rows written by the operator command line (``python -m
#: installsure user ...``), which acts without a principal.
COMMAND_LINE_ACTOR = "operator (command line)"


def actor_name_of(connection: Connection, principal: Principal | None) -> str | None:
    """The name to remember for ``principal``: its own, else its user row's (a service
    principal without a name: its id; no principal: the command line)."""
    if principal is None:
        return COMMAND_LINE_ACTOR
    if principal.name:
        return principal.name
    if principal.is_service:
        return principal.id
    return connection.execute(
        select(users.c.name).where(users.c.id == principal.id)
    ).scalar_one_or_none()


def record(
    connection: Connection,
    *,
    actor: Principal | None,
    action: str,
    target_type: str,
    target_id: str,
    project_id: str | None = None,
    changes: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    at: datetime | None = None,
) -> int:
    """Append one row; its id. ``actor`` None is the operator command line. Service
    principals have no user row: their id is kept out of ``actor_id`` (a foreign key to
    users) and their name kept instead. Empty ``changes`` are stored as NULL."""
    result = connection.execute(
        insert(audit_log)
        .values(
            at=at or datetime.now(UTC),
            actor_id=None if actor is None or actor.is_service else actor.id,
            actor_name=actor_name_of(connection, actor),
            project_id=project_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            changes=dict(changes) if changes else None,
            request_id=request_id,
        )
    )
    key = result.inserted_primary_key
    assert key is not None  # noqa: S101 - an INSERT of one row has one
    return int(key[0])


def project_activity(
    connection: Connection, project_id: str, *, page: int, per_page: int
) -> tuple[list[AuditEntry], int]:
    """One page of ``project_id``'s audit rows, newest first, and how many there are."""
    total = connection.execute(
        select(func.count()).select_from(audit_log).where(audit_log.c.project_id == project_id)
    ).scalar_one()
    rows = connection.execute(
        select(
            audit_log,
            # The name at the time of acting; the current one when none was known then.
            func.coalesce(audit_log.c.actor_name, users.c.name).label("shown_name"),
        )
        .select_from(audit_log.outerjoin(users, users.c.id == audit_log.c.actor_id))
        .where(audit_log.c.project_id == project_id)
        # ids grow with time; ordering by them is stable where two rows share a time.
        .order_by(audit_log.c.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).mappings()
    entries = [
        AuditEntry(
            id=int(r["id"]),
            at=r["at"],
            actor_id=r["actor_id"],
            actor_name=r["shown_name"],
            project_id=r["project_id"],
            action=r["action"],
            target_type=r["target_type"],
            target_id=r["target_id"],
            changes=r["changes"],
            request_id=r["request_id"],
        )
        for r in rows
    ]
    return entries, int(total)
