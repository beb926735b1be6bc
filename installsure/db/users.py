"""User accounts in the database: synchronous functions for ``Database.run``.

Each takes the transaction's ``Connection`` and runs on the database thread pool. The
rules that must hold however requests interleave are kept here, under one lock per
database (:func:`lock_accounts`): the first account of an empty system is the only one
that becomes admin, and the last active admin cannot be demoted or deactivated. SQLite
already runs one writing transaction at a time (the engine begins them IMMEDIATE);
PostgreSQL takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import field, frozen
from sqlalchemy import Connection, and_, func, or_, select

from installsure.db.tables import users

#: The advisory lock key of account changes that decide who is admin (PostgreSQL).
ACCOUNTS_LOCK_KEY = 7_001_009


class EmailTaken(Exception):  # noqa: N818 - the condition, as the API reports it
    """An account with this e-mail address exists."""


@frozen
class UserRecord:
    """One row of ``users``; the hash never leaves the auth code."""

    id: str
    email: str
    name: str
    role: str
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None
    password_hash: str = field(repr=False)


def email_key(email: str) -> str:
    """The form addresses are compared in: one account per address whatever its case."""
    return email.strip().lower()


def lock_accounts(conn: Connection) -> None:
    """Serialize the transactions that create admins or take admin rights away."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(ACCOUNTS_LOCK_KEY)))
    # SQLite: this transaction already holds the database's write lock.


def _record(row: Any) -> UserRecord:
    return UserRecord(
        id=row.id, email=row.email, name=row.name, role=row.role,
        is_active=bool(row.is_active), created_at=row.created_at,
        last_login_at=row.last_login_at, password_hash=row.password_hash,
    )


_COLUMNS = (users.c.id, users.c.email, users.c.name, users.c.role, users.c.is_active,
            users.c.created_at, users.c.last_login_at, users.c.password_hash)


def get_user(conn: Connection, user_id: str) -> UserRecord | None:
    row = conn.execute(select(*_COLUMNS).where(users.c.id == user_id)).first()
    return _record(row) if row is not None else None


def get_user_by_email(conn: Connection, email: str) -> UserRecord | None:
    row = conn.execute(select(*_COLUMNS).where(users.c.email_key == email_key(email))).first()
    return _record(row) if row is not None else None


def insert_user(
    conn: Connection, *, email: str, name: str, password_hash: str, role: str | None,
    now: datetime,
) -> UserRecord:
    """A new account. ``role=None`` applies the first-user rule: admin when there is no
    account yet, else member. Raises :class:`EmailTaken`."""
    lock_accounts(conn)
    if get_user_by_email(conn, email) is not None:
        raise EmailTaken(email)
    if role is None:
        existing = conn.execute(select(func.count()).select_from(users)).scalar_one()
        role = "admin" if existing == 0 else "member"
    user_id = str(uuid.uuid4())
    conn.execute(users.insert().values(
        id=user_id, email=email.strip(), email_key=email_key(email), name=name,
        password_hash=password_hash, role=role, is_active=True, created_at=now,
        updated_at=now, password_changed_at=now,
    ))
    created = get_user(conn, user_id)
    assert created is not None  # noqa: S101 - inserted just above, in this transaction
    return created


def count_active_admins(conn: Connection) -> int:
    query = select(func.count()).select_from(users).where(
        and_(users.c.role == "admin", users.c.is_active.is_(True)))
    return int(conn.execute(query).scalar_one())


def update_user(conn: Connection, user_id: str, values: Mapping[str, Any], now: datetime) -> None:
    conn.execute(users.update().where(users.c.id == user_id).values(**values, updated_at=now))


def record_login(conn: Connection, user_id: str, now: datetime, new_hash: str | None) -> None:
    """Stamp ``last_login_at``; store ``new_hash`` when the password was rehashed."""
    values: dict[str, Any] = {"last_login_at": now}
    if new_hash is not None:
        values["password_hash"] = new_hash
    conn.execute(users.update().where(users.c.id == user_id).values(**values))


def set_password_hash(conn: Connection, user_id: str, password_hash: str, now: datetime) -> None:
    conn.execute(users.update().where(users.c.id == user_id).values(
        password_hash=password_hash, password_changed_at=now, updated_at=now))


def list_users(
    conn: Connection, *, page: int, per_page: int, q: str | None = None,
    role: str | None = None, active: bool | None = None,
) -> tuple[list[UserRecord], int]:
    """One page of accounts, oldest first, and how many match in all."""
    conditions = []
    if q:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_") + "%"
        conditions.append(or_(users.c.email_key.like(pattern, escape="\\"),
                              func.lower(users.c.name).like(pattern, escape="\\")))
    if role is not None:
        conditions.append(users.c.role == role)
    if active is not None:
        conditions.append(users.c.is_active.is_(active))
    where = and_(*conditions) if conditions else None
    count_query = select(func.count()).select_from(users)
    page_query = select(*_COLUMNS).order_by(users.c.created_at, users.c.id)
    if where is not None:
        count_query = count_query.where(where)
        page_query = page_query.where(where)
    total = int(conn.execute(count_query).scalar_one())
    rows = conn.execute(page_query.limit(per_page).offset((page - 1) * per_page)).all()
    return [_record(row) for row in rows], total
