"""The HTTP layer's ``authenticate(ctx, requirement)`` hook: users by access token, and
automation by the operator token.

``Authorization: Bearer <token>`` is either the configured ``API_SECRET`` (compared in
constant time; the caller is the service principal :data:`OPERATOR`, an admin) or an
access token, checked by an :class:`~installsure.auth.interfaces.AccessTokenVerifier`.
A missing, malformed, forged, expired or revoked credential is 401 (counted against
the client address by the HTTP layer's failed-authentication limit); a valid one
whose role is too weak for the route is 403.
"""

from __future__ import annotations

import hmac
from typing import Any

from twisted.internet import defer

from installsure.auth.interfaces import AccessTokenVerifier, AuthenticationError
from installsure.auth.operator import OPERATOR
from installsure.auth.policy import allows_global
from installsure.auth.principal import Principal
from installsure.db.errors import DatabaseUnavailable
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError

_CHALLENGE = ((b"WWW-Authenticate", b'Bearer realm="installsure"'),)
#: Longer than any token we issue; a bigger header is refused without parsing it.
MAX_CREDENTIAL_LENGTH = 4096


def unauthenticated(message: str) -> ApiError:
    return ApiError("UNAUTHENTICATED", message, headers=_CHALLENGE)


def bearer_credential(ctx: RequestContext) -> str:
    """The credential of ``Authorization: Bearer <it>``, or 401."""
    raw: Any = ctx.request.getHeader(b"authorization")  # type: ignore[no-untyped-call]
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    if not raw:
        raise unauthenticated(
            "This endpoint needs credentials: send 'Authorization: Bearer <access token>' "
            "(POST /api/auth/login gives one).")
    scheme, _, credential = raw.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
        raise unauthenticated(
            "The Authorization header must be 'Bearer <access token>'.")
    return str(credential)


class UserAuthenticator:
    """See the module docstring."""

    def __init__(self, verifier: AccessTokenVerifier, api_secret: str | None) -> None:
        self._verifier = verifier
        self._operator = api_secret.encode() if api_secret else None

    def __call__(self, ctx: RequestContext, requirement: str) -> defer.Deferred[Principal]:
        try:
            credential = bearer_credential(ctx)
        except ApiError as error:
            return defer.fail(error)
        if self._operator is not None and hmac.compare_digest(
            credential.encode("utf-8", "surrogateescape"), self._operator
        ):
            return self._permitted(OPERATOR, requirement)
        d = self._verifier.verify(credential)
        d.addCallback(self._permitted, requirement)
        d.addErrback(self._refused)
        return d

    @staticmethod
    def _permitted(principal: Principal, requirement: str) -> defer.Deferred[Principal]:
        if not allows_global(principal, requirement):
            return defer.fail(ApiError(
                "FORBIDDEN", f"This endpoint needs the {requirement} role or a stronger one."))
        return defer.succeed(principal)

    @staticmethod
    def _refused(failure: Any) -> Any:
        if failure.check(AuthenticationError):
            raise unauthenticated(str(failure.value))
        if failure.check(DatabaseUnavailable):
            raise ApiError(
                "UNAVAILABLE",
                "Credentials cannot be checked right now (neither Redis nor the database "
                "answers); try again shortly.",
                headers=((b"Retry-After", b"5"),),
            )
        return failure
