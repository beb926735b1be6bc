"""What other parts (HTTP, the realtime broker) need from auth, as interfaces.

The HTTP layer and the WAMP broker depend on these Protocols, not on how tokens are
signed or memberships stored, so each side can be tested with the other's real
implementation or a small stand-in.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from installsure.auth.principal import Principal

#: Redis pub/sub channel of the "membership changed" signal. Each message is JSON
#: ``{"projectId": ..., "userId": ..., "change": "added"|"removed"|"role"|"deleted",
#: "role": <new project role or null>}``; ``"deleted"`` (the whole project went) carries
#: ``userId: null``. Subscribers re-check what the user may see (the broker drops
#: subscriptions the user no longer may hold).
MEMBERSHIP_CHANGED_CHANNEL = "installsure:auth:membership-changed"

#: Redis pub/sub channel announcing revoked sessions: each message is a session id.
#: Processes drop the session from their in-process cache at once (the revocation set
#: in Redis stays the source of truth).
SESSION_REVOKED_CHANNEL = "installsure:auth:session-revoked"


class AuthenticationError(Exception):
    """The credential was missing, malformed, forged, expired or revoked.

    ``str(error)`` is safe to show the client: it names no secret and does not say
    which check failed in a way that helps forgery (e.g. "invalid or expired token").
    """


class AccessTokenVerifier(Protocol):
    """Turns an access token into the principal it was issued to."""

    def verify(self, token: str) -> Deferred[Principal]:
        """The principal, or a failure with :class:`AuthenticationError`.

        Checks signature (algorithm pinned), ``iss``, ``aud``, ``exp`` and that the
        token's session (``sid``) is not revoked on any process.
        """


class ProjectAccess(Protocol):
    """Project membership, as the broker and the HTTP routes ask about it."""

    def project_role(self, principal: Principal, project_id: str) -> Deferred[str | None]:
        """The principal's role in that project (``owner``/``editor``/``viewer``), or
        None when it is not a member or the project does not exist."""

    def may_subscribe(self, principal: Principal, topic: str) -> Deferred[bool]:
        """May the principal receive events of ``topic``? Decides
        ``installsure.project.<id>.*`` (project members, admins and managers) and
        ``installsure.file.<id>.*`` (members of the file's project); False for any other
        topic (the broker's static rules decide those)."""
