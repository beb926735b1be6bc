"""Administering accounts (API "Auth and users"): list, create, read, change role,
deactivate. Every route needs the admin role (or the operator token)."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen, validators

from installsure.api.accounts_schema import (
    MAX_NAME_LENGTH,
    POLICY,
    Role,
    UserView,
    answer,
    password_bodies,
)
from installsure.auth.accounts import Accounts
from installsure.auth.user_admin import UserAdmin
from installsure.http.context import RequestContext
from installsure.http.routing import Paged, Router

TAGS = ("users",)
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000


@frozen
class UsersQuery:
    page: int = field(default=1, validator=[validators.ge(1), validators.le(MAX_PAGE)])
    per_page: int = field(default=20, validator=[validators.ge(1),
                                                 validators.le(MAX_PER_PAGE)])
    #: Part of the e-mail address or name, any case.
    q: str | None = field(default=None, validator=validators.optional(validators.max_len(200)))
    role: Role | None = None
    #: Only active (true) or only deactivated (false) accounts.
    active: bool | None = None


@frozen
class UserPatch:
    """What to change; absent or null fields stay as they are."""

    role: Role | None = None
    #: false deactivates the account and ends its sessions at once; true reactivates it.
    is_active: bool | None = None
    name: str | None = field(default=None, validator=validators.optional(
        [validators.min_len(1), validators.max_len(MAX_NAME_LENGTH)]))


def users_router(accounts: Accounts, admin: UserAdmin) -> Router:
    """The routes of ``/api/users``."""
    router = Router()
    _register, new_user_body, _change = password_bodies(accounts.settings.password_min_length)

    @router.route("GET", "/api/users", query=UsersQuery, response=Paged[UserView],
                  auth="admin", tags=TAGS, errors=(503,),
                  summary="Accounts, oldest first, with filters")
    async def list_users(_ctx: RequestContext, query: UsersQuery) -> Paged[UserView]:
        found, total = await answer(admin.list_users(
            page=query.page, per_page=query.per_page, q=query.q, role=query.role,
            active=query.active))
        return Paged([UserView.of(u) for u in found], query.page, query.per_page, total)

    @router.route(
        "POST", "/api/users", body=new_user_body, response=UserView, status=201,
        auth="admin", tags=TAGS, forbid_extra=True, errors=(409, 503),
        summary="Create an account (also while registration is closed)",
        description="The account is not signed in; its owner signs in with the password "
                    "given. 409 when the e-mail address has an account. " + POLICY,
    )
    async def create_user(ctx: RequestContext, body: Any) -> UserView:
        user = await answer(accounts.create_user(ctx.user, body.email, body.password,
                                                 body.name, role=body.role,
                                                 request_id=ctx.request_id))
        return UserView.of(user)

    @router.route("GET", "/api/users/{id}", response=UserView, auth="admin", tags=TAGS,
                  errors=(503,), summary="One account")
    async def get_user(_ctx: RequestContext, id: str) -> UserView:
        return UserView.of(await answer(admin.get_user(id)))

    @router.route(
        "PATCH", "/api/users/{id}", body=UserPatch, response=UserView, auth="admin",
        tags=TAGS, forbid_extra=True, errors=(409, 503),
        summary="Change an account's role, name or whether it is active",
        description=(
            "A role change or a deactivation ends the account's sessions at once on every "
            "server process (a new role applies from its next sign-in). 409 when it would "
            "leave no active administrator."),
    )
    async def update_user(ctx: RequestContext, id: str, body: UserPatch) -> UserView:
        user = await answer(admin.update_user(
            ctx.user, id, role=body.role, is_active=body.is_active, name=body.name,
            request_id=ctx.request_id))
        return UserView.of(user)

    return router
