"""Signing up, signing in and out, refreshing, changing one's password.

:class:`Accounts` is what the auth routes call; it ties together the password hasher
(argon2id off the reactor thread), the database (users, sessions, refresh tokens, audit
rows, each change in one transaction), access tokens, the revocation set and the login
throttle. It raises :class:`~installsure.http.errors.ApiError` with the answer the
client gets, like the authorization policy does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from attrs import evolve, frozen
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from twisted.logger import Logger

from installsure.auth.audit import account_event, record_account_change
from installsure.auth.password_policy import password_problems
from installsure.auth.passwords import PasswordHasher
from installsure.auth.principal import Principal
from installsure.auth.revocation import SessionRevocations
from installsure.auth.settings import AuthSettings
from installsure.auth.throttle import LoginThrottle
from installsure.auth.tokens import AccessTokens
from installsure.db import sessions as session_rows
from installsure.db import users as user_rows
from installsure.db.service import Database
from installsure.db.users import EmailTaken, UserRecord, email_key
from installsure.http.errors import ApiError, FieldError, validation_error
from installsure.http.ratelimit import RateLimiter
from installsure.redis.interfaces import RedisReplyError, RedisUnavailable

log = Logger(namespace="installsure.auth.accounts")

#: The rate rule counting login attempts per account (``http.rate_limits.login_account``).
LOGIN_ACCOUNT_RULE = "login_account"
WRONG_CREDENTIALS = "The e-mail address or the password is wrong."
BAD_REFRESH = "The refresh token is invalid, expired or already used; sign in again."


@frozen
class ClientInfo:
    """Where a request came from, for sessions, throttling and the audit log."""

    address: str
    user_agent: str | None = None
    request_id: str | None = None


@frozen
class SignedIn:
    user: UserRecord
    access_token: str
    refresh_token: str
    expires_in: int


def utc_now() -> datetime:
    return datetime.now(UTC)


def email_taken() -> ApiError:
    return ApiError("CONFLICT", "An account with this e-mail address exists already.")


def require_user_principal(principal: Principal) -> None:
    if principal.is_service:
        raise ApiError("FORBIDDEN", "The operator token is not an account; this needs a "
                       "user's access token.")


class Accounts:
    """See the module docstring."""

    def __init__(
        self,
        *,
        database: Database,
        hasher: PasswordHasher,
        tokens: AccessTokens,
        revocations: SessionRevocations,
        settings: AuthSettings,
        throttle: LoginThrottle | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = database
        self._hasher = hasher
        self._tokens = tokens
        self._revocations = revocations
        self._settings = settings
        self._throttle = throttle
        self._limiter = limiter
        self._now = clock

    @property
    def settings(self) -> AuthSettings:
        return self._settings

    # -- creating accounts -------------------------------------------------------------

    def check_password(self, password: str, email: str, field: str = "password") -> None:
        problems = password_problems(password, email,
                                     min_length=self._settings.password_min_length)
        if problems:
            raise validation_error([FieldError(field, message) for message in problems])

    async def register(self, email: str, password: str, name: str,
                       client: ClientInfo) -> SignedIn:
        """A new account (admin when it is the first, else member), signed in."""
        if self._settings.registration == "closed":
            raise ApiError("FORBIDDEN", "Registration is closed: an administrator creates "
                           "accounts (POST /api/users).")
        self.check_password(password, email)
        await self._refuse_taken(email)
        password_hash = await self._hasher.hash(password)
        now = self._now()

        def create(conn: Connection) -> tuple[UserRecord, str, str]:
            user = user_rows.insert_user(conn, email=email, name=name,
                                         password_hash=password_hash, role=None, now=now)
            record_account_change(conn, actor=_self_actor(user),
                                  action="user.registered", user_id=user.id,
                                  changes={"role": [None, user.role]},
                                  request_id=client.request_id)
            session_id, refresh = session_rows.create_session(
                conn, user.id, ttl=self._settings.refresh_token_ttl, now=now,
                user_agent=client.user_agent, address=client.address)
            return user, session_id, refresh

        user, session_id, refresh = await self._insert(create)
        account_event("user.registered", user_id=user.id, actor=_self_actor(user),
                      role=user.role)
        return self._signed_in(user, session_id, refresh)

    async def create_user(self, actor: Principal, email: str, password: str, name: str, *,
                          role: str, request_id: str | None = None) -> UserRecord:
        """An account made by an administrator (not signed in)."""
        self.check_password(password, email)
        await self._refuse_taken(email)
        password_hash = await self._hasher.hash(password)
        now = self._now()

        def create(conn: Connection) -> UserRecord:
            user = user_rows.insert_user(conn, email=email, name=name,
                                         password_hash=password_hash, role=role, now=now)
            record_account_change(conn, actor=actor, action="user.created", user_id=user.id,
                                  changes={"role": [None, role]}, request_id=request_id)
            return user

        user: UserRecord = await self._insert(create)
        account_event("user.created", user_id=user.id, actor=actor, role=role)
        return user

    async def _refuse_taken(self, email: str) -> None:
        # Before the expensive hash; the insert checks again under the lock.
        existing = await self._db.run(
            lambda conn: user_rows.get_user_by_email(conn, email), readonly=True)
        if existing is not None:
            raise email_taken()

    async def _insert(self, create: Callable[[Connection], Any]) -> Any:
        try:
            return await self._db.run(create)
        except (EmailTaken, IntegrityError):
            raise email_taken() from None

    # -- signing in, refreshing, out ---------------------------------------------------

    async def login(self, email: str, password: str, client: ClientInfo) -> SignedIn:
        key = email_key(email)
        if self._limiter is not None:
            account = hashlib.sha256(key.encode()).hexdigest()[:32]
            decision = await self._limiter.check(LOGIN_ACCOUNT_RULE, f"account:{account}")
            if decision is not None and not decision.allowed:
                raise decision.error("Too many sign-in attempts for this account")
        if self._throttle is not None:
            await self._throttle.refuse_if_waiting(key, client.address)
        user = await self._db.run(lambda conn: user_rows.get_user_by_email(conn, email),
                                  readonly=True)
        if user is None:
            matched = await self._hasher.verify_unknown(password)
        else:
            matched = await self._hasher.verify(user.password_hash, password)
        if user is None or not matched or not user.is_active:
            if self._throttle is not None:
                await self._throttle.failed(key, client.address)
            raise ApiError("UNAUTHENTICATED", WRONG_CREDENTIALS)
        if self._throttle is not None:
            await self._throttle.succeeded(key)
        new_hash = None
        if self._hasher.needs_rehash(user.password_hash):
            new_hash = await self._hasher.hash(password)
        now = self._now()
        signed_in_user = user

        def sign_in(conn: Connection) -> tuple[str, str]:
            user_rows.record_login(conn, signed_in_user.id, now, new_hash)
            return session_rows.create_session(
                conn, signed_in_user.id, ttl=self._settings.refresh_token_ttl, now=now,
                user_agent=client.user_agent, address=client.address)

        session_id, refresh = await self._db.run(sign_in)
        account_event("user.signed_in", user_id=user.id, actor=_self_actor(user),
                      sessionId=session_id, rehashed=new_hash is not None)
        return self._signed_in(_evolve_login(user, now), session_id, refresh)

    async def refresh(self, refresh_token: str, client: ClientInfo) -> SignedIn:
        now = self._now()
        ttl = self._settings.refresh_token_ttl

        def rotate(conn: Connection) -> tuple[session_rows.RotationResult, UserRecord | None]:
            result = session_rows.rotate_refresh_token(conn, refresh_token, ttl=ttl, now=now)
            user = None
            if result.outcome is session_rows.Rotation.ROTATED and result.user_id:
                user = user_rows.get_user(conn, result.user_id)
            return result, user

        result, user = await self._db.run(rotate)
        if result.outcome is session_rows.Rotation.REUSED and result.session_id:
            log.warn("a spent refresh token of session {session_id} was presented again from "
                     "{address}: the session is revoked", session_id=result.session_id,
                     address=client.address)
            account_event("session.refresh_reused", user_id=result.user_id or "",
                          actor=None, sessionId=result.session_id, address=client.address)
            await self._announce([result.session_id])
        if result.outcome is not session_rows.Rotation.ROTATED or user is None:
            raise ApiError("UNAUTHENTICATED", BAD_REFRESH)
        assert result.session_id is not None  # noqa: S101 - set for ROTATED
        assert result.refresh_token is not None  # noqa: S101
        return self._signed_in(user, result.session_id, result.refresh_token)

    async def logout(self, principal: Principal) -> None:
        require_user_principal(principal)
        session_id = principal.session_id
        if session_id is None:
            return
        now = self._now()
        await self._db.run(
            lambda conn: session_rows.revoke_session(conn, session_id, "logout", now))
        await self._announce([session_id])
        account_event("user.signed_out", user_id=principal.id, actor=principal,
                      sessionId=session_id)

    async def me(self, principal: Principal) -> UserRecord:
        require_user_principal(principal)
        user = await self._db.run(lambda conn: user_rows.get_user(conn, principal.id),
                                  readonly=True)
        if user is None or not user.is_active:
            raise ApiError("UNAUTHENTICATED", "This account no longer exists or is deactivated.")
        return user

    async def change_password(self, principal: Principal, current: str, new: str,
                              client: ClientInfo) -> int:
        """Check the current password, store the new one, end the user's other sessions
        (how many it ended)."""
        user = await self.me(principal)
        key = email_key(user.email)
        if self._throttle is not None:
            await self._throttle.refuse_if_waiting(key, client.address)
        if not await self._hasher.verify(user.password_hash, current):
            if self._throttle is not None:
                await self._throttle.failed(key, client.address)
            raise validation_error([FieldError("currentPassword", "is not the current password")])
        problems = password_problems(new, user.email,
                                     min_length=self._settings.password_min_length)
        if new == current:
            problems.append("must differ from the current password")
        if problems:
            raise validation_error([FieldError("newPassword", m) for m in problems])
        password_hash = await self._hasher.hash(new)
        now = self._now()

        def store(conn: Connection) -> list[str]:
            user_rows.set_password_hash(conn, user.id, password_hash, now)
            ended = session_rows.revoke_user_sessions(
                conn, user.id, "password_changed", now, keep=principal.session_id,
                access_ttl=self._settings.access_token_ttl)
            record_account_change(conn, actor=principal, action="user.password_changed",
                                  user_id=user.id, request_id=client.request_id)
            return ended

        ended = await self._db.run(store)
        await self._announce(ended)
        account_event("user.password_changed", user_id=user.id, actor=principal,
                      endedSessions=len(ended))
        return len(ended)

    # -- helpers -----------------------------------------------------------------------

    def _signed_in(self, user: UserRecord, session_id: str, refresh: str) -> SignedIn:
        issued = self._tokens.issue(user.id, user.role, session_id)
        return SignedIn(user=user, access_token=issued.token, refresh_token=refresh,
                        expires_in=issued.expires_in)

    async def _announce(self, session_ids: list[str]) -> None:
        """Tell every process; the database has the sessions revoked whatever Redis says."""
        if not session_ids:
            return
        # A failure is logged by revoke(); other processes learn when their cache ages out.
        with suppress(RedisUnavailable, RedisReplyError):
            await self._revocations.revoke(session_ids)


def _self_actor(user: UserRecord) -> Principal:
    return Principal(id=user.id, role=user.role, kind="user", name=user.name)


def _evolve_login(user: UserRecord, now: datetime) -> UserRecord:
    return evolve(user, last_login_at=now)
