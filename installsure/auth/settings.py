"""Settings of authentication (config section ``auth``).

Plain values only, so the config loader fills them from TOML and the environment; how
strong the secrets must be in production is checked by ``installsure.config.checks``.
"""

from __future__ import annotations

from attrs import field, frozen

from installsure.config.values import Seconds


@frozen
class AuthSettings:
    """Signing keys, token lifetimes and registration."""

    jwt_secret: str | None = field(default=None, repr=False)
    """HS256 signing key, at least 32 random bytes (production refuses placeholders and
    patterns). Development generates one in the data dir."""
    api_secret: str | None = field(default=None, repr=False)
    """Operator token for the queue administration routes (``Authorization: Bearer``);
    unset, they answer 401. Production holds it to the same rules as ``jwt_secret``."""
    access_token_ttl: Seconds = Seconds(15 * 60)
    refresh_token_ttl: Seconds = Seconds(30 * 86400)
    registration_open: bool = True
    password_min_length: int = 10
