"""Authentication of a new session: a ticket (an access token) or, where allowed, none.

Both protocols on ``/ws`` go through :class:`Gatekeeper`, so a token is judged exactly
as the HTTP API judges it (the verifier is the domain's) and each session gets an
authorizer with the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from installsure.realtime.authorizer import SessionAuthorizer
from installsure.realtime.metrics import REALTIME_STATS, RealtimeStats
from installsure.realtime.principal import (
    AccessTokenVerifier,
    AuthenticationError,
    Principal,
    ProjectAccess,
    token_expiry,
)
from installsure.realtime.rules import Rule

ANONYMOUS = "anonymous"
#: The longest ticket looked at; an access token is far shorter.
MAX_TICKET_LENGTH = 8192


@frozen
class Identity:
    """A session's authentication as WELCOME reports it."""

    authid: str
    authrole: str
    authmethod: str
    principal: Principal | None
    #: When the ticket expires (UNIX time); None: never (anonymous).
    expires_at: float | None = None


class Gatekeeper:
    def __init__(
        self,
        verifier: AccessTokenVerifier,
        access: ProjectAccess,
        rules: Sequence[Rule],
        *,
        allow_anonymous: bool = False,
        stats: RealtimeStats = REALTIME_STATS,
    ) -> None:
        self.verifier = verifier
        self.access = access
        self.rules = rules
        self.allow_anonymous = allow_anonymous
        self.stats = stats

    def anonymous(self, session_id: int) -> Identity:
        return Identity(f"anonymous-{session_id}", ANONYMOUS, ANONYMOUS, None)

    def verify_ticket(self, ticket: object) -> Deferred[Identity]:
        """The identity of an access token; fails with AuthenticationError."""
        if not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET_LENGTH:
            self.stats.auth_failed("malformed")
            failed: Deferred[Identity] = Deferred()
            failed.errback(AuthenticationError("the ticket must be an access token string"))
            return failed
        d = self.verifier.verify(ticket)

        def known(principal: Principal) -> Identity:
            if principal.is_service:
                raise AuthenticationError("the operator token cannot open realtime sessions")
            return Identity(principal.id, principal.role, "ticket", principal,
                            token_expiry(ticket))

        def refused(failure: Failure) -> Failure:
            reason = "refused" if failure.check(AuthenticationError) else "error"  # type: ignore[no-untyped-call]
            self.stats.auth_failed(reason)
            return failure

        return d.addCallbacks(known, refused)

    def authorizer(self, identity: Identity) -> SessionAuthorizer:
        return SessionAuthorizer(self.rules, self.access, identity.principal, identity.authrole)
