"""Audit-log rows and business-log events for account changes.

Account changes write an ``audit_log`` row (through the one writer,
:func:`installsure.db.audit.record`) in the same transaction as the change, so there is
never one without the other, and, once committed, a business event in the log
(namespace ``installsure.events``). The actions: ``user.registered``, ``user.created``
(by an administrator or the operator CLI), ``user.role_changed``, ``user.deactivated``,
``user.reactivated``, ``user.renamed``, ``user.password_changed``. ``changes`` holds
``{field: [before, after]}`` where there is a before; passwords are never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from installsure.auth.principal import Principal
from installsure.db import audit
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
    """One audit row: ``actor`` (None: the operator CLI) did ``action`` to the account
    (accounts belong to no project)."""
    audit.record(conn, actor=actor, action=action, target_type="user", target_id=user_id,
                 changes=changes, request_id=request_id)


def account_event(action: str, *, user_id: str, actor: Principal | None, **fields: Any) -> None:
    """The business-log event of an account change (call it after the commit)."""
    business_event(action, userId=user_id,
                   actorId=actor.id if actor is not None else "cli", **fields)
