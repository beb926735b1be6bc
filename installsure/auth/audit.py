"""Audit-log rows and business-log events for account changes.

Account changes write an ``audit_log`` row in the same transaction as the change (so
there is never one without the other) and, once committed, a business event in the log
(namespace ``installsure.events``). The actions: ``user.registered``, ``user.created``
(by an administrator or the operator CLI), ``user.role_changed``, ``user.deactivated``,
``user.reactivated``, ``user.renamed``, ``user.password_changed``. ``changes`` holds
``{field: [before, after]}`` where there is a before; passwords are never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from installsure.auth.principal import Principal
from installsure.db.tables import audit_log, users
from installsure.logs import business_event


def record_account_change(
    conn: Connection,
    *,
    actor: Principal | None,
    action: str,
    user_id: str,
    changes: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    """One audit row: ``actor`` (None: the operator CLI) did ``action`` to the account."""
    actor_id: str | None = None
    actor_name: str | None
    if actor is None:
        actor_name = "operator (command line)"
    elif actor.is_service:
        actor_name = actor.name or actor.id
    else:
        actor_id = actor.id
        actor_name = actor.name or conn.execute(
            select(users.c.name).where(users.c.id == actor.id)).scalar()
    conn.execute(audit_log.insert().values(
        actor_id=actor_id, actor_name=actor_name, project_id=None, action=action,
        target_type="user", target_id=user_id,
        changes=dict(changes) if changes else None, request_id=request_id,
    ))


def account_event(action: str, *, user_id: str, actor: Principal | None, **fields: Any) -> None:
    """The business-log event of an account change (call it after the commit)."""
    business_event(action, userId=user_id,
                   actorId=actor.id if actor is not None else "cli", **fields)
