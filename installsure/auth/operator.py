"""Operator access with the shared ``auth.api_secret`` (the old system's ``API_SECRET``).

Until user accounts exist, the admin routes (queue administration) accept exactly one
credential: ``Authorization: Bearer <api_secret>``, checked in constant time. Without a
configured secret they answer 401 with what to configure; they are never open. The user
and role model of the auth work replaces this authenticator with one that also knows
users, keeping this credential as a service principal.
"""

from __future__ import annotations

import hmac

from installsure.auth.policy import allows_global
from installsure.auth.principal import Principal
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError

#: The service principal: automation that holds ``API_SECRET`` acts as an admin.
OPERATOR = Principal(id="operator", role="admin", kind="service", name="operator")


class OperatorAuthenticator:
    """The ``authenticate(ctx, requirement)`` hook of the HTTP layer (see module docstring)."""

    def __init__(self, api_secret: str | None) -> None:
        self._expected = f"Bearer {api_secret}".encode() if api_secret else None

    def __call__(self, ctx: RequestContext, requirement: str) -> Principal:
        if self._expected is None:
            raise ApiError(
                "UNAUTHENTICATED",
                "This endpoint needs the operator token, and none is configured: set "
                "API_SECRET (or auth.api_secret) and send 'Authorization: Bearer <it>'.",
            )
        sent = ctx.request.getHeader(b"authorization") or b""  # type: ignore[no-untyped-call]
        if isinstance(sent, str):
            sent = sent.encode()
        if not hmac.compare_digest(sent, self._expected):
            raise ApiError(
                "UNAUTHENTICATED",
                "Missing or wrong credentials: send 'Authorization: Bearer <API_SECRET>'.",
            )
        if not allows_global(OPERATOR, requirement):
            raise ApiError("FORBIDDEN", f"This endpoint needs the {requirement} role.")
        return OPERATOR
