"""The AccessTokenVerifier that HTTP and the realtime broker use: signature and claims,
then whether the token's session still stands on any process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection
from twisted.internet import defer
from twisted.logger import Logger

from installsure.auth.interfaces import AuthenticationError
from installsure.auth.principal import Principal
from installsure.auth.revocation import SessionRevocations
from installsure.auth.tokens import AccessClaims, AccessTokens
from installsure.db.sessions import session_is_live
from installsure.redis.interfaces import RedisReplyError, RedisUnavailable

log = Logger(namespace="installsure.auth.verifier")

SESSION_ENDED = "This session has ended; sign in again."

#: ``run(fn)`` of the Database service: calls ``fn(connection)`` on its thread pool.
RunInDatabase = Callable[..., "defer.Deferred[Any]"]


class TokenVerifier:
    """Implements :class:`~installsure.auth.interfaces.AccessTokenVerifier`.

    A token whose session is in this process's cache costs one signature check and no
    I/O; otherwise Redis is asked, and the database when Redis cannot answer.
    """

    def __init__(
        self, tokens: AccessTokens, revocations: SessionRevocations, run_in_database: RunInDatabase,
    ) -> None:
        self._tokens = tokens
        self._revocations = revocations
        self._run = run_in_database

    def verify(self, token: str) -> defer.Deferred[Principal]:
        try:
            claims = self._tokens.verify(token)
        except AuthenticationError as error:
            return defer.fail(error)
        principal = Principal(id=claims.user_id, role=claims.role, kind="user",
                              session_id=claims.session_id)
        known = self._revocations.cached(claims.session_id)
        if known is False:
            return defer.succeed(principal)
        if known is True:
            return defer.fail(AuthenticationError(SESSION_ENDED))
        d = self._revocations.is_revoked(claims.session_id)
        d.addErrback(self._ask_database, claims)

        def decide(revoked: bool) -> Principal:
            if revoked:
                raise AuthenticationError(SESSION_ENDED)
            return principal

        return d.addCallback(decide)

    def _ask_database(self, failure: Any, claims: AccessClaims) -> defer.Deferred[bool]:
        failure.trap(RedisUnavailable, RedisReplyError)
        log.debug("revocation check of session {session_id} asks the database: {reason}",
                  session_id=claims.session_id, reason=failure.getErrorMessage())
        session_id = claims.session_id

        def ended(conn: Connection) -> bool:
            return not session_is_live(conn, session_id)

        return self._run(ended, readonly=True)
