"""Signing up and in (API "Auth and users"): register, login, refresh, logout, me,
change-password. A thin layer over :class:`installsure.auth.accounts.Accounts`.

Register and login are limited per client address by the ``login`` rate rule (and
login also per account by ``login_account``, and throttled after failures); the
others by the default rule.
"""

from __future__ import annotations

from typing import Any

from installsure.api.accounts_schema import (
    POLICY,
    LoggedOut,
    LoginRequest,
    PasswordChanged,
    RefreshRequest,
    TokenPair,
    UserView,
    answer,
    client_info,
    password_bodies,
)
from installsure.auth.accounts import Accounts
from installsure.http.context import RequestContext
from installsure.http.routing import Router

TAGS = ("auth",)


def auth_router(accounts: Accounts) -> Router:
    """The routes of ``/api/auth``."""
    router = Router()
    register_body, _new_user, change_body = password_bodies(
        accounts.settings.password_min_length)

    @router.route(
        "POST", "/api/auth/register", body=register_body, response=TokenPair, status=201,
        tags=TAGS, rate_limit="login", forbid_extra=True, errors=(403, 409, 503),
        summary="Create an account and sign in",
        description=(
            "The role is never chosen by the client: the first account of an empty system "
            "becomes admin, every later one member. 403 while registration is closed "
            "(auth.registration = closed; administrators then create accounts with POST "
            "/api/users), 409 when the e-mail address has an account. " + POLICY),
    )
    async def register(ctx: RequestContext, body: Any) -> TokenPair:
        return TokenPair.of(await answer(accounts.register(body.email, body.password,
                                                           body.name, client_info(ctx))))

    @router.route(
        "POST", "/api/auth/login", body=LoginRequest, response=TokenPair, tags=TAGS,
        rate_limit="login", errors=(401, 503), summary="Sign in with e-mail and password",
        description=(
            "401 for any wrong credential, with the same message and about the same time "
            "whether or not the address has an account. After repeated failures for one "
            "address or from one client, attempts are refused with 429 and Retry-After "
            "for a wait that doubles with each further failure."),
    )
    async def login(ctx: RequestContext, body: LoginRequest) -> TokenPair:
        return TokenPair.of(await answer(accounts.login(body.email, body.password,
                                                        client_info(ctx))))

    @router.route(
        "POST", "/api/auth/refresh", body=RefreshRequest, response=TokenPair, tags=TAGS,
        errors=(401, 503), summary="Exchange a refresh token for a new pair",
        description=(
            "Each refresh token works once and is replaced by the one returned. Presenting "
            "a spent one again ends the whole session (every token issued from its sign-in)."),
    )
    async def refresh(ctx: RequestContext, body: RefreshRequest) -> TokenPair:
        return TokenPair.of(await answer(accounts.refresh(body.refresh_token,
                                                          client_info(ctx))))

    @router.route(
        "POST", "/api/auth/logout", response=LoggedOut, auth="user", tags=TAGS,
        errors=(503,), summary="End this session",
        description="Its access tokens are refused on every server process at once, and "
                    "its refresh token stops working.",
    )
    async def logout(ctx: RequestContext) -> LoggedOut:
        await answer(accounts.logout(ctx.user))
        return LoggedOut(logged_out=True, session_id=ctx.user.session_id)

    async def current_user(ctx: RequestContext) -> UserView:
        return UserView.of(await answer(accounts.me(ctx.user)))

    router.add("GET", "/api/auth/me", current_user, response=UserView, auth="user", tags=TAGS,
               errors=(503,), summary="The signed-in account", operation_id="me")
    router.add("GET", "/api/auth/verify", current_user, response=UserView, auth="user",
               tags=TAGS, errors=(503,), operation_id="verify",
               summary="The signed-in account (the old system's name for /api/auth/me)")

    @router.route(
        "POST", "/api/auth/change-password", body=change_body, response=PasswordChanged,
        auth="user", tags=TAGS, forbid_extra=True, errors=(503,),
        summary="Change the password; other sessions end",
        description=(
            "currentPassword is checked (a wrong one is 400 naming it, and counts as a "
            "failed sign-in for the throttle). This session stays signed in; every other "
            "session of the account ends. " + POLICY),
    )
    async def change_password(ctx: RequestContext, body: Any) -> PasswordChanged:
        ended = await answer(accounts.change_password(
            ctx.user, body.current_password, body.new_password, client_info(ctx)))
        return PasswordChanged(password_changed=True, other_sessions_ended=ended)

    return router
