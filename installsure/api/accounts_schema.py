"""The JSON shapes of the auth and users routes, shared by ``api/auth.py`` and
``api/users.py``.

Bodies that carry a new password are made per router (:func:`password_bodies`), so the
OpenAPI document states the configured ``auth.password_min_length``; the rules no
schema can say (not the e-mail's name part, not a common password) are in the
descriptions, and break with a 400 ``VALIDATION_ERROR`` naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal, TypeVar

from attrs import field, frozen, validators

from installsure.auth.accounts import ClientInfo, SignedIn
from installsure.auth.password_policy import MAX_LENGTH
from installsure.auth.passwords import PasswordHasherBusy
from installsure.db.errors import DatabaseUnavailable
from installsure.db.users import UserRecord
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError

T = TypeVar("T")

Role = Literal["admin", "manager", "member", "viewer"]

#: The usual shape of an e-mail address (ASCII; what mail systems accept everywhere).
EMAIL_PATTERN = (r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200

_Validators = list[Any]
_email: _Validators = [validators.max_len(MAX_EMAIL_LENGTH), validators.matches_re(EMAIL_PATTERN)]
_name: _Validators = [validators.min_len(1), validators.max_len(MAX_NAME_LENGTH)]
_secret: _Validators = [validators.min_len(1), validators.max_len(MAX_LENGTH)]

POLICY = ("Passwords must not contain the part of the e-mail address before '@' and must "
          "not be a common password (or one followed only by digits and punctuation); "
          "such a password is refused with 400 VALIDATION_ERROR naming the field.")


@frozen
class UserView:
    """An account as the API shows it."""

    id: str
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: UserRecord) -> UserView:
        return cls(id=user.id, email=user.email, name=user.name, role=user.role,  # type: ignore[arg-type]
                   is_active=user.is_active, created_at=user.created_at,
                   last_login_at=user.last_login_at)


@frozen
class TokenPair:
    """A signed-in session: the account, an access token and the refresh token to
    renew it with (each refresh token works once)."""

    user: UserView
    access_token: str
    refresh_token: str
    #: Seconds until the access token expires.
    expires_in: int
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme's name

    @classmethod
    def of(cls, signed_in: SignedIn) -> TokenPair:
        return cls(user=UserView.of(signed_in.user), access_token=signed_in.access_token,
                   refresh_token=signed_in.refresh_token, expires_in=signed_in.expires_in)


@frozen
class LoginRequest:
    email: str = field(validator=validators.max_len(MAX_EMAIL_LENGTH))
    password: str = field(validator=_secret)


@frozen
class RefreshRequest:
    refresh_token: str = field(validator=[validators.min_len(1), validators.max_len(200)])


@frozen
class LoggedOut:
    logged_out: bool
    session_id: str | None


@frozen
class PasswordChanged:
    password_changed: bool
    #: How many other sessions of the account were ended.
    other_sessions_ended: int


def password_bodies(min_length: int) -> tuple[type[Any], type[Any], type[Any]]:
    """``(RegisterRequest, NewUser, ChangePasswordRequest)`` for this minimum length."""
    fresh: _Validators = [validators.min_len(min_length), validators.max_len(MAX_LENGTH)]

    @frozen
    class RegisterRequest:
        email: str = field(validator=_email)
        password: str = field(validator=fresh)
        name: str = field(validator=_name)

    @frozen
    class NewUser:
        email: str = field(validator=_email)
        password: str = field(validator=fresh)
        name: str = field(validator=_name)
        role: Role = "member"

    @frozen
    class ChangePasswordRequest:
        current_password: str = field(validator=_secret)
        new_password: str = field(validator=fresh)

    return RegisterRequest, NewUser, ChangePasswordRequest


def client_info(ctx: RequestContext) -> ClientInfo:
    agent: Any = ctx.request.getHeader(b"user-agent")  # type: ignore[no-untyped-call]
    if isinstance(agent, bytes):
        agent = agent.decode("latin-1")
    return ClientInfo(address=ctx.remote, user_agent=agent or None, request_id=ctx.request_id)


async def answer(call: Awaitable[T]) -> T:
    """Await an accounts call, answering unavailability as 503 with ``Retry-After``."""
    try:
        return await call
    except DatabaseUnavailable:
        raise ApiError("UNAVAILABLE", "The database is not available; try again shortly.",
                       headers=((b"Retry-After", b"5"),)) from None
    except PasswordHasherBusy:
        raise ApiError("UNAVAILABLE", "Too many sign-ins are being checked right now; try "
                       "again in a moment.", headers=((b"Retry-After", b"2"),)) from None
