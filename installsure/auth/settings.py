"""Settings of authentication (config section ``auth``).

Plain values only, so the config loader fills them from TOML and the environment; how
strong the secrets must be in production is checked by ``installsure.config.checks``,
and :func:`auth_problems` checks what needs more than one value (a key file for the
asymmetric algorithms, lifetimes that fit together).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from attrs import Attribute, field, frozen

from installsure.config.values import InvalidSettingError, Seconds

JwtAlgorithm = Literal["HS256", "EdDSA", "RS256"]
JWT_ALGORITHMS: tuple[str, ...] = get_args(JwtAlgorithm)
Registration = Literal["open", "closed"]

#: argon2's own floor: at least 8 KiB of memory per lane.
ARGON2_MIN_KIB_PER_LANE = 8


def _at_least(minimum: float) -> Any:
    def check(_inst: object, attribute: Attribute[Any], value: float) -> None:
        if value < minimum:
            raise InvalidSettingError(
                attribute.name, f"auth.{attribute.name} must be at least {minimum}, got {value!r}"
            )

    return check


def _not_blank(_inst: object, attribute: Attribute[Any], value: str) -> None:
    if not value.strip():
        raise InvalidSettingError(attribute.name, f"auth.{attribute.name} must not be empty")


@frozen
class AuthSettings:
    """Signing keys, token lifetimes, registration, password hashing and login throttling."""

    jwt_secret: str | None = field(default=None, repr=False)
    """HS256 signing key, at least 32 random bytes (production refuses placeholders and
    patterns). Development generates one in the data dir."""
    api_secret: str | None = field(default=None, repr=False)
    """Operator token (``Authorization: Bearer``): automation holding it acts as an
    administrator (the service principal ``operator``). Unset, only user tokens work.
    Production holds it to the same rules as ``jwt_secret``."""
    jwt_algorithm: JwtAlgorithm = "HS256"
    """How access tokens are signed: HS256 with ``jwt_secret``, or EdDSA (Ed25519) or
    RS256 with the private key in ``jwt_key_file``. Verification accepts this algorithm
    only."""
    jwt_key_file: str | None = None
    """PEM file of the private key for EdDSA or RS256 (every node that serves HTTP needs
    it; the public key is derived from it)."""
    jwt_issuer: str = field(default="installsure", validator=_not_blank)
    """The ``iss`` claim written and required."""
    jwt_audience: str = field(default="installsure-api", validator=_not_blank)
    """The ``aud`` claim written and required."""
    access_token_ttl: Seconds = field(default=Seconds(15 * 60), validator=_at_least(10))
    """How long an access token is valid; also how long a revoked session is remembered
    in Redis."""
    refresh_token_ttl: Seconds = field(default=Seconds(30 * 86400), validator=_at_least(60))
    """How long a session may go unused before its refresh token stops working (each
    refresh starts it again)."""
    registration: Registration = "open"
    """``open``: anyone may register (the first account becomes admin, later ones
    member). ``closed``: only administrators create accounts (``POST /api/users``, or
    ``python -m installsure user create``)."""
    password_min_length: int = field(default=10, validator=_at_least(8))
    """Shortest password accepted, in characters."""
    argon2_time_cost: int = field(default=2, validator=_at_least(1))
    """argon2id passes over memory (the defaults are OWASP's: 19 MiB, 2 passes, 1 lane).
    Changing any argon2 value rehashes each password at its owner's next login."""
    argon2_memory_kib: int = field(default=19456, validator=_at_least(ARGON2_MIN_KIB_PER_LANE))
    """argon2id memory per hash in KiB (19456 = 19 MiB; 65536 with 3 passes is RFC
    9106's stronger choice, at about three times the CPU per sign-in)."""
    argon2_parallelism: int = field(default=1, validator=_at_least(1))
    """argon2id lanes per hash, each a thread of its own while it works (more only helps
    when cores are idle)."""
    password_threads: int = field(default=0, validator=_at_least(0))
    """Threads that hash and verify passwords (each uses ``argon2_memory_kib`` while
    it works); never the reactor thread, and at a lower CPU priority than it, so a flood
    of sign-ins slows sign-ins rather than every other request. 0: one fewer than the
    CPUs the process may run on, at least 1 and at most 4 (one core stays the
    reactor's: on two cores a second hashing thread took a quarter of other requests'
    throughput while sign-ins ran, for sign-ins per second that varied more than they
    grew)."""
    password_queue_limit: int = field(default=64, validator=_at_least(1))
    """Hashes waiting for a thread beyond which logins answer 503 at once rather than
    queue without bound."""
    login_free_failures_per_account: int = field(default=5, validator=_at_least(1))
    """Wrong passwords for one e-mail address before each further one makes it wait."""
    login_free_failures_per_address: int = field(default=20, validator=_at_least(1))
    """Failed logins from one client address before each further one makes it wait."""
    login_delay: Seconds = field(default=Seconds(1.0), validator=_at_least(0.001))
    """First wait after the free failures; it doubles with each further failure."""
    login_delay_max: Seconds = field(default=Seconds(15 * 60), validator=_at_least(0.001))
    """Longest wait."""
    login_failure_memory: Seconds = field(default=Seconds(15 * 60), validator=_at_least(1))
    """Failures are forgotten this long after the last one (a success forgets the
    account's at once)."""
    revocation_cache_ttl: Seconds = field(default=Seconds(5.0), validator=_at_least(0))
    """How long a process trusts that a session is not revoked before asking Redis
    again. Revocations reach every process at once through Redis pub/sub; this bounds
    the delay should a message be lost. 0 asks Redis on every request."""


def auth_problems(settings: AuthSettings) -> list[tuple[str, str]]:
    """``(key, message)`` for every rule across auth settings that is broken."""
    problems: list[tuple[str, str]] = []
    if settings.refresh_token_ttl <= settings.access_token_ttl:
        problems.append((
            "refresh_token_ttl",
            f"must be longer than auth.access_token_ttl ({settings.access_token_ttl:g}s), "
            f"got {settings.refresh_token_ttl:g}s",
        ))
    if settings.argon2_memory_kib < ARGON2_MIN_KIB_PER_LANE * settings.argon2_parallelism:
        problems.append((
            "argon2_memory_kib",
            f"argon2 needs at least {ARGON2_MIN_KIB_PER_LANE} KiB per lane: with "
            f"argon2_parallelism = {settings.argon2_parallelism} that is "
            f"{ARGON2_MIN_KIB_PER_LANE * settings.argon2_parallelism}",
        ))
    if settings.login_delay_max < settings.login_delay:
        problems.append(("login_delay_max", "must not be shorter than auth.login_delay"))
    if settings.jwt_algorithm != "HS256":
        if not settings.jwt_key_file:
            problems.append((
                "jwt_key_file",
                f"auth.jwt_algorithm = {settings.jwt_algorithm} signs with a private key: "
                "set auth.jwt_key_file to its PEM file (README: 'Signing keys')",
            ))
        else:
            from installsure.auth.keys import KeyFileError, load_signing_key

            try:
                load_signing_key(Path(settings.jwt_key_file), settings.jwt_algorithm)
            except KeyFileError as error:
                problems.append(("jwt_key_file", str(error)))
    return problems
