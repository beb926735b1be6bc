"""What the realtime layer asks of the domain, and stand-ins until an implementation is
wired in.

The interfaces are auth's (:mod:`installsure.auth.interfaces`): verifying an access
token exactly as the HTTP API does (signature, expiry, revocation) and the membership
check for project and file topics. The stand-ins refuse everything, so a process that
has no implementation yet serves nothing it should not.
"""

from __future__ import annotations

import base64
import binascii
import json

from twisted.internet.defer import Deferred, fail, succeed

from installsure.auth.interfaces import AccessTokenVerifier, AuthenticationError, ProjectAccess
from installsure.auth.principal import Principal

__all__ = [
    "AccessTokenVerifier",
    "AuthenticationError",
    "NoProjectAccess",
    "Principal",
    "ProjectAccess",
    "RefuseAllTokens",
    "token_expiry",
]


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT the verifier has accepted (None if it has none).

    Read without checking the signature: only called after the verifier did, to know
    when the WAMP session must end.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


class NoProjectAccess:
    """Nobody may see any project: the answer until a membership check is wired in."""

    def project_role(self, principal: Principal, project_id: str) -> Deferred[str | None]:
        return succeed(None)

    def may_subscribe(self, principal: Principal, topic: str) -> Deferred[bool]:
        return succeed(False)


class RefuseAllTokens:
    """Refuses every ticket: the verifier until the accounts part provides one."""

    def verify(self, token: str) -> Deferred[Principal]:
        return fail(AuthenticationError("this server cannot verify access tokens yet"))
