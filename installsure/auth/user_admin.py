"""Administering accounts: listing them, changing a role, deactivating, renaming.

A role change or a deactivation ends the account's sessions at once (on every process,
through the revocation set): its access tokens carry the role they were issued with,
so the new role applies from the next sign-in, and a deactivated account is out
immediately. The last active administrator can be neither demoted nor deactivated;
that rule is decided under the accounts lock, so two administrators demoting each
other at the same moment cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from installsure.auth.accounts import utc_now
from installsure.auth.audit import account_event, record_account_change
from installsure.auth.principal import Principal
from installsure.auth.revocation import SessionRevocations
from installsure.db import sessions as session_rows
from installsure.db import users as user_rows
from installsure.db.service import Database
from installsure.db.users import UserRecord
from installsure.http.errors import ApiError
from installsure.redis.interfaces import RedisReplyError, RedisUnavailable

NO_SUCH_USER = "No such user."


class UserAdmin:
    """See the module docstring."""

    def __init__(
        self, *, database: Database, revocations: SessionRevocations, access_token_ttl: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = database
        self._revocations = revocations
        self._access_ttl = access_token_ttl
        self._now = clock

    async def list_users(
        self, *, page: int, per_page: int, q: str | None, role: str | None,
        active: bool | None,
    ) -> tuple[list[UserRecord], int]:
        def query(conn: Connection) -> tuple[list[UserRecord], int]:
            return user_rows.list_users(conn, page=page, per_page=per_page, q=q, role=role,
                                        active=active)

        return await self._db.run(query, readonly=True)

    async def get_user(self, user_id: str) -> UserRecord:
        user = await self._db.run(lambda conn: user_rows.get_user(conn, user_id), readonly=True)
        if user is None:
            raise ApiError("NOT_FOUND", NO_SUCH_USER)
        return user

    async def update_user(
        self, actor: Principal, user_id: str, *, role: str | None = None,
        is_active: bool | None = None, name: str | None = None,
        request_id: str | None = None,
    ) -> UserRecord:
        now = self._now()

        def update(conn: Connection) -> tuple[UserRecord, list[tuple[str, dict[str, Any]]],
                                              list[str]]:
            user_rows.lock_accounts(conn)
            user = user_rows.get_user(conn, user_id)
            if user is None:
                raise ApiError("NOT_FOUND", NO_SUCH_USER)
            values: dict[str, Any] = {}
            actions: list[tuple[str, dict[str, Any]]] = []
            if role is not None and role != user.role:
                values["role"] = role
                actions.append(("user.role_changed", {"role": [user.role, role]}))
            if is_active is not None and is_active != user.is_active:
                values["is_active"] = is_active
                actions.append(("user.deactivated" if not is_active else "user.reactivated",
                                {"isActive": [user.is_active, is_active]}))
            if name is not None and name != user.name:
                values["name"] = name
                actions.append(("user.renamed", {"name": [user.name, name]}))
            stays_admin = values.get("role", user.role) == "admin" and values.get(
                "is_active", user.is_active)
            if user.role == "admin" and user.is_active and not stays_admin \
                    and user_rows.count_active_admins(conn) <= 1:
                raise ApiError(
                    "CONFLICT", "This is the last active administrator: make another account "
                    "admin first.")
            if not values:
                return user, [], []
            user_rows.update_user(conn, user_id, values, now)
            for action, changes in actions:
                record_account_change(conn, actor=actor, action=action, user_id=user_id,
                                      changes=changes, request_id=request_id)
            ended: list[str] = []
            if "role" in values or values.get("is_active") is False:
                reason = "deactivated" if values.get("is_active") is False else "role_changed"
                ended = session_rows.revoke_user_sessions(conn, user_id, reason, now,
                                                          access_ttl=self._access_ttl)
            updated = user_rows.get_user(conn, user_id)
            assert updated is not None  # noqa: S101 - updated just above
            return updated, actions, ended

        updated, actions, ended = await self._db.run(update)
        if ended:
            # A failure is logged by revoke(); the database has the sessions revoked.
            with suppress(RedisUnavailable, RedisReplyError):
                await self._revocations.revoke(ended)
        for action, changes in actions:
            account_event(action, user_id=user_id, actor=actor, changes=changes,
                          endedSessions=len(ended))
        return updated
