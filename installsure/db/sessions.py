"""Sessions and their refresh tokens in the database: functions for ``Database.run``.

A session is one sign-in; its refresh tokens form a family, each replacing the one
before. A refresh token is 256 random bits shown to the client once and stored only as
its SHA-256, so a copy of the database gives no usable token. Spending one is a
conditional UPDATE (``... WHERE spent_at IS NULL``): of two requests presenting the
same token only one can win, on SQLite and PostgreSQL alike, and the other is treated
as what it is, the reuse of a spent token, which ends the whole session.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from attrs import frozen
from sqlalchemy import Connection, and_, select

from installsure.db.tables import refresh_tokens, sessions, users

#: Bytes of randomness in a refresh token (256 bits).
REFRESH_TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_refresh_token() -> tuple[str, str]:
    """A new token and its hash."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    return token, hash_token(token)


def create_session(
    conn: Connection, user_id: str, *, ttl: float, now: datetime,
    user_agent: str | None = None, address: str | None = None,
) -> tuple[str, str]:
    """A new session with its first refresh token: ``(session_id, refresh_token)``."""
    session_id = str(uuid.uuid4())
    token, token_hash = new_refresh_token()
    conn.execute(sessions.insert().values(
        id=session_id, user_id=user_id, created_at=now, last_used_at=now,
        expires_at=now + timedelta(seconds=ttl),
        user_agent=user_agent[:512] if user_agent else None, client_address=address,
    ))
    conn.execute(refresh_tokens.insert().values(
        token_hash=token_hash, session_id=session_id, issued_at=now))
    return session_id, token


class Rotation(enum.Enum):
    ROTATED = "rotated"
    #: No such token (never issued, or its session was deleted with its user).
    UNKNOWN = "unknown"
    #: The session was revoked or expired, or its user deactivated.
    ENDED = "ended"
    #: The token was spent already: the session is revoked now.
    REUSED = "reused"


@frozen
class RotationResult:
    outcome: Rotation
    session_id: str | None = None
    user_id: str | None = None
    role: str | None = None
    #: The new refresh token (ROTATED only).
    refresh_token: str | None = None


def rotate_refresh_token(
    conn: Connection, token: str, *, ttl: float, now: datetime,
) -> RotationResult:
    """Spend ``token`` and issue its successor (see module docstring)."""
    token_hash = hash_token(token)
    row = conn.execute(
        select(refresh_tokens.c.session_id, sessions.c.revoked_at, sessions.c.expires_at,
               users.c.id.label("user_id"), users.c.role, users.c.is_active)
        .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
        .join(users, users.c.id == sessions.c.user_id)
        .where(refresh_tokens.c.token_hash == token_hash)
    ).first()
    if row is None:
        return RotationResult(Rotation.UNKNOWN)
    session_id = row.session_id
    if row.revoked_at is not None or row.expires_at <= now:
        return RotationResult(Rotation.ENDED, session_id=session_id, user_id=row.user_id)
    spent = conn.execute(
        refresh_tokens.update()
        .where(and_(refresh_tokens.c.token_hash == token_hash,
                    refresh_tokens.c.spent_at.is_(None)))
        .values(spent_at=now)
    )
    if spent.rowcount != 1:
        revoke_session(conn, session_id, "refresh_reused", now)
        return RotationResult(Rotation.REUSED, session_id=session_id, user_id=row.user_id)
    if not row.is_active:
        revoke_session(conn, session_id, "deactivated", now)
        return RotationResult(Rotation.ENDED, session_id=session_id, user_id=row.user_id)
    new_token, new_hash = new_refresh_token()
    conn.execute(refresh_tokens.insert().values(
        token_hash=new_hash, session_id=session_id, issued_at=now))
    conn.execute(sessions.update().where(sessions.c.id == session_id).values(
        last_used_at=now, expires_at=now + timedelta(seconds=ttl)))
    return RotationResult(Rotation.ROTATED, session_id=session_id, user_id=row.user_id,
                          role=row.role, refresh_token=new_token)


def revoke_session(conn: Connection, session_id: str, reason: str, now: datetime) -> bool:
    """End one session; False when it had ended already."""
    result = conn.execute(
        sessions.update()
        .where(and_(sessions.c.id == session_id, sessions.c.revoked_at.is_(None)))
        .values(revoked_at=now, revoked_reason=reason)
    )
    return bool(result.rowcount)


def revoke_user_sessions(
    conn: Connection, user_id: str, reason: str, now: datetime, *,
    keep: str | None = None, access_ttl: float,
) -> list[str]:
    """End every session of the user (but ``keep``); the ids of those whose access
    tokens may still be in use, for the revocation set."""
    live = and_(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
    if keep is not None:
        live = and_(live, sessions.c.id != keep)
    # A session expired longer ago than an access token lives has no valid token left.
    recent = sessions.c.expires_at > now - timedelta(seconds=access_ttl)
    ids = [row.id for row in conn.execute(select(sessions.c.id).where(and_(live, recent)))]
    conn.execute(sessions.update().where(live).values(revoked_at=now, revoked_reason=reason))
    return ids


def recently_revoked_sessions(conn: Connection, since: datetime) -> list[str]:
    """The ids of the sessions revoked at or after ``since``."""
    query = select(sessions.c.id).where(sessions.c.revoked_at >= since)
    return [row.id for row in conn.execute(query)]


def session_is_live(conn: Connection, session_id: str) -> bool:
    """Not revoked, and its user is active: the database's answer when Redis has none."""
    row = conn.execute(
        select(sessions.c.revoked_at, users.c.is_active)
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.id == session_id)
    ).first()
    return row is not None and row.revoked_at is None and bool(row.is_active)
