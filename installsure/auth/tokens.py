"""Access tokens: short-lived signed JWTs (PyJWT), and the checks every one must pass.

Claims: ``sub`` (user id), ``role`` (global role when issued), ``sid`` (the session, so
revoking it refuses the token), ``jti`` (this token's id), ``iss``, ``aud``, ``iat``,
``exp``. Verification accepts exactly the configured algorithm: a token that says
``alg: none``, or HS256 when the server signs RS256 (the "key confusion" forgery, where
the public key is used as an HMAC secret), fails before its signature is looked at.
Every claim is required, and ``iss`` and ``aud`` must be ours.

A token that passed is remembered (its text, up to :data:`VERIFIED_CACHE_SIZE` of them)
until it expires, so a client sending the same token with every request pays for the
signature and claim checks once: a remembered token is only checked for expiry again.
Whether its session still stands is asked per request all the same
(:mod:`installsure.auth.verifier`).

Refresh tokens are not JWTs: they are random values kept (hashed) in the database, see
:mod:`installsure.auth.sessions`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from attrs import frozen

from installsure.auth.interfaces import AuthenticationError
from installsure.auth.keys import SigningKey
from installsure.bounded import remember
from installsure.db.tables import GLOBAL_ROLES

#: Every claim a token must carry.
REQUIRED_CLAIMS = ("sub", "role", "sid", "jti", "iss", "aud", "iat", "exp")
#: Clock difference tolerated between the node that issued a token and one checking it.
CLOCK_LEEWAY_SECONDS = 5

#: Verified tokens remembered per process (emptied when full: a token that is not
#: remembered any more is simply verified again).
VERIFIED_CACHE_SIZE = 4096

INVALID_TOKEN = "The access token is invalid or expired; sign in again or refresh it."  # noqa: S105


@frozen
class IssuedToken:
    token: str
    jti: str
    #: Seconds from now until it expires (``expiresIn`` of the API).
    expires_in: int


@frozen
class AccessClaims:
    """The checked claims of one access token."""

    user_id: str
    role: str
    session_id: str
    jti: str
    issued_at: int
    expires_at: int


class AccessTokens:
    """Issues and verifies access tokens with one key (see module docstring)."""

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        audience: str,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._algorithms = [key.algorithm]
        self.issuer = issuer
        self.audience = audience
        self.ttl = int(ttl)
        self._clock = clock
        self._options: Any = {"require": list(REQUIRED_CLAIMS), "verify_signature": True}
        #: Token text -> its claims, for tokens that passed every check.
        self._verified: dict[str, AccessClaims] = {}

    @property
    def algorithm(self) -> str:
        return self._key.algorithm

    def issue(self, user_id: str, role: str, session_id: str) -> IssuedToken:
        now = int(self._clock())
        jti = str(uuid.uuid4())
        claims = {
            "sub": user_id,
            "role": role,
            "sid": session_id,
            "jti": jti,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl,
        }
        token = jwt.encode(claims, self._key.private, algorithm=self._key.algorithm)
        return IssuedToken(token=token, jti=jti, expires_in=self.ttl)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; :class:`AuthenticationError` for anything else."""
        known = self._verified.get(token)
        if known is None:
            known = remember(self._verified, token, self._check(token), VERIFIED_CACHE_SIZE)
        # The clock the token was checked against is PyJWT's; ours may be a test's.
        if known.expires_at + CLOCK_LEEWAY_SECONDS < self._clock():
            self._verified.pop(token, None)
            raise AuthenticationError(INVALID_TOKEN)
        return known

    def _check(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key.public,
                algorithms=self._algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options=self._options,
                leeway=CLOCK_LEEWAY_SECONDS,
            )
        except jwt.PyJWTError:
            raise AuthenticationError(INVALID_TOKEN) from None
        sub, role, sid, jti = claims["sub"], claims["role"], claims["sid"], claims["jti"]
        if not all(isinstance(v, str) and v for v in (sub, sid, jti)) or role not in GLOBAL_ROLES:
            raise AuthenticationError(INVALID_TOKEN)
        return AccessClaims(
            user_id=sub, role=role, session_id=sid, jti=jti,
            issued_at=int(claims["iat"]), expires_at=int(claims["exp"]),
        )
