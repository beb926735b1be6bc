"""The benchmark's authenticator: HS256 access tokens verified with PyJWT.

Stands in for the server's own token verification until that exists, doing the same
work per request: verify the signature with the algorithm pinned, check ``iss``,
``aud``, ``exp``, then check that the token's session (``sid``) is not revoked. The
revocation check asks Redis (``EXISTS`` of the session's revocation key) once per
session and remembers a "not revoked" answer for ``cache_seconds``; a message on the
session-revoked channel drops it at once.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from twisted.internet.defer import Deferred

from installsure.auth.interfaces import SESSION_REVOKED_CHANNEL
from installsure.auth.policy import allows_global
from installsure.auth.principal import Principal
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError
from installsure.redis.client import RedisService

ISSUER = "installsure"
AUDIENCE = "installsure-api"
_REQUIRED = ["exp", "iat", "sub", "sid", "jti", "iss", "aud"]


def _unauthenticated() -> ApiError:
    return ApiError("UNAUTHENTICATED", "Invalid or expired token.")


class BenchTokenAuthenticator:
    def __init__(self, secret: str, redis: RedisService, cache_seconds: float = 30.0) -> None:
        self._secret = secret
        self._redis = redis
        self._cache_seconds = cache_seconds
        self._not_revoked: dict[str, float] = {}
        redis.subscribe(SESSION_REVOKED_CHANNEL, self._revoked)

    def _revoked(self, _channel: str, session_id: str) -> None:
        self._not_revoked.pop(session_id, None)

    def __call__(self, ctx: RequestContext, requirement: str) -> Principal | Deferred[Any]:
        raw = ctx.request.requestHeaders.getRawHeaders(b"authorization")
        if not raw or not raw[0].startswith(b"Bearer "):
            raise ApiError("UNAUTHENTICATED", "Send 'Authorization: Bearer <access token>'.")
        try:
            claims = jwt.decode(raw[0][7:].decode("ascii"), self._secret, algorithms=["HS256"],
                                issuer=ISSUER, audience=AUDIENCE,
                                options={"require": _REQUIRED})
        except (jwt.PyJWTError, UnicodeDecodeError):
            raise _unauthenticated() from None
        principal = Principal(id=claims["sub"], role=claims["role"], session_id=claims["sid"])
        if not allows_global(principal, requirement):
            raise ApiError("FORBIDDEN", f"This endpoint needs the {requirement} role.")
        session_id = claims["sid"]
        now = time.monotonic()
        if self._not_revoked.get(session_id, 0.0) > now:
            return principal
        d = self._redis.execute("EXISTS", self._redis.key("auth", "revoked", session_id))

        def decided(revoked: int) -> Principal:
            if revoked:
                raise _unauthenticated()
            self._not_revoked[session_id] = now + self._cache_seconds
            return principal

        return d.addCallback(decided)
