"""Who a session is, and what the realtime layer asks of the domain about it.

The domain (accounts, projects) provides the implementations: verifying an access token
exactly as the HTTP API does (signature, expiry, revocation) and answering whether a
user may see a project or a file. The broker knows only these protocols.
"""

from __future__ import annotations

from typing import Protocol

from attrs import frozen
from twisted.internet.defer import Deferred


class AuthenticationFailed(Exception):  # noqa: N818 - reads as the event it reports
    """The ticket is not a valid, unrevoked access token; the message says why."""


@frozen
class Principal:
    """An authenticated user as the realtime layer sees it."""

    user_id: str
    """The session's authid."""
    role: str
    """The session's authrole: ``admin``, ``manager``, ``member``, ``viewer``."""
    session_id: str | None = None
    """The login session (refresh-token family) the token belongs to, so that its
    revocation closes exactly the WAMP sessions opened with it."""
    expires_at: float | None = None
    """When the access token expires (UNIX time): the WAMP session ends then unless the
    client re-authenticates."""


class AccessTokenVerifier(Protocol):
    def verify(self, token: str) -> Deferred[Principal]:
        """The principal of ``token``; fails with :class:`AuthenticationFailed`."""
        ...


class ProjectAccess(Protocol):
    """The domain's membership check."""

    def may_see_project(self, principal: Principal, project_id: str) -> Deferred[bool]: ...

    def may_see_file(self, principal: Principal, file_id: str) -> Deferred[bool]: ...


class NoProjectAccess:
    """Nobody may see any project: the answer until a membership check is wired in."""

    def may_see_project(self, principal: Principal, project_id: str) -> Deferred[bool]:
        from twisted.internet.defer import succeed

        return succeed(False)

    def may_see_file(self, principal: Principal, file_id: str) -> Deferred[bool]:
        from twisted.internet.defer import succeed

        return succeed(False)


class RefuseAllTokens:
    """Refuses every ticket: the verifier until the accounts part provides one."""

    def verify(self, token: str) -> Deferred[Principal]:
        from twisted.internet.defer import fail

        return fail(AuthenticationFailed("this server cannot verify access tokens yet"))
