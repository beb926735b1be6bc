"""The auth parts of one process, built from the ``auth`` settings.

:func:`build_auth` makes the password hasher, the token signer, the revocation set,
the verifier, the HTTP authenticator, the accounts and user administration, and one
service that starts and stops what runs (the hasher's threads, the revocation
subscription); the service tree adds it before the HTTP listeners, so it stops after
them.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from installsure.auth.accounts import Accounts
from installsure.auth.authenticator import UserAuthenticator
from installsure.auth.keys import SigningKey, hmac_key, load_signing_key
from installsure.auth.passwords import PasswordHasher
from installsure.auth.revocation import SessionRevocations
from installsure.auth.settings import AuthSettings
from installsure.auth.throttle import LoginThrottle
from installsure.auth.tokens import AccessTokens
from installsure.auth.user_admin import UserAdmin
from installsure.auth.verifier import TokenVerifier
from installsure.db.service import Database
from installsure.db.sessions import recently_revoked_sessions
from installsure.http.ratelimit import RateLimiter
from installsure.redis.interfaces import RedisCommands

log = Logger(namespace="installsure.auth")


def signing_key(settings: AuthSettings) -> SigningKey:
    """The configured key; without any (a Config that skipped ``prepare_data_dir``, as in
    some tests) a random one for this process, with a warning."""
    if settings.jwt_algorithm != "HS256":
        assert settings.jwt_key_file is not None  # noqa: S101 - auth_problems requires it
        return load_signing_key(Path(settings.jwt_key_file), settings.jwt_algorithm)
    if settings.jwt_secret:
        return hmac_key(settings.jwt_secret)
    log.warn("no auth.jwt_secret: access tokens are signed with a random key of this "
             "process alone (other processes refuse them; a restart signs everyone out)")
    return hmac_key(secrets.token_urlsafe(48))


class AuthService(Service):
    """Starts the hasher's threads and the revocation subscription; stops them."""

    name = "auth"

    def __init__(self, hasher: PasswordHasher, revocations: SessionRevocations) -> None:
        self._hasher = hasher
        self._revocations = revocations

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._hasher.startService()
        self._revocations.start()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        d = self._revocations.stop()
        self._hasher.stopService()
        return d


@frozen
class AuthParts:
    hasher: PasswordHasher
    tokens: AccessTokens
    revocations: SessionRevocations
    verifier: TokenVerifier
    authenticator: UserAuthenticator
    accounts: Accounts
    admin: UserAdmin
    service: AuthService


def build_auth(
    settings: AuthSettings,
    *,
    redis: RedisCommands,
    database: Database,
    limiter: RateLimiter | None,
    reactor: Any,
    hasher: PasswordHasher | None = None,
) -> AuthParts:
    """Every auth part for one process (see module docstring)."""
    hasher = hasher or PasswordHasher.from_settings(settings, reactor=reactor)
    tokens = AccessTokens(signing_key(settings), issuer=settings.jwt_issuer,
                          audience=settings.jwt_audience, ttl=settings.access_token_ttl)
    def recently_revoked(seconds: float) -> defer.Deferred[list[str]]:
        since = datetime.now(UTC) - timedelta(seconds=seconds)
        return database.run(lambda conn: recently_revoked_sessions(conn, since),
                            readonly=True)

    revocations = SessionRevocations(redis, access_token_ttl=settings.access_token_ttl,
                                     cache_ttl=settings.revocation_cache_ttl, reactor=reactor,
                                     recently_revoked=recently_revoked)
    verifier = TokenVerifier(tokens, revocations, database.run)
    accounts = Accounts(database=database, hasher=hasher, tokens=tokens,
                        revocations=revocations, settings=settings,
                        throttle=LoginThrottle(redis, settings), limiter=limiter)
    admin = UserAdmin(database=database, revocations=revocations,
                      access_token_ttl=settings.access_token_ttl)
    return AuthParts(
        hasher=hasher, tokens=tokens, revocations=revocations, verifier=verifier,
        authenticator=UserAuthenticator(verifier, settings.api_secret), accounts=accounts,
        admin=admin, service=AuthService(hasher, revocations),
    )
