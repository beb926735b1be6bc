"""Checks the types alone cannot make: endpoints that parse, rules across settings."""

from __future__ import annotations

from installsure.config.errors import ConfigProblem
from installsure.config.layers import Layers
from installsure.config.schema import Config
from installsure.config.values import parse_port, parse_string_tuple

MIN_JWT_SECRET_BYTES = 32


def check_endpoints(layers: Layers) -> None:
    """Listen endpoints parse (checked even when other values are bad)."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    try:
        endpoints = parse_string_tuple(layers.values.get("http", {}).get("listen", ()))
    except ValueError:
        return  # structuring reports the wrong type
    for endpoint in endpoints:
        try:
            serverFromString(MemoryReactor(), endpoint)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, KeyError) as exc:
            layers.problems.append(ConfigProblem(
                "http.listen", layers.source_of(("http", "listen")),
                f"{endpoint!r} is not a Twisted endpoint string ({exc}); "
                "e.g. tcp:8000:interface=127.0.0.1 or unix:/run/installsure.sock",
            ))


def check_combinations(config: Config, layers: Layers) -> None:
    """Rules that involve more than one value."""
    if not config.http.listen and config.runs_http:
        layers.problems.append(ConfigProblem(
            "http.listen", layers.source_of(("http", "listen")),
            "the api role needs at least one listen endpoint",
        ))
    secret = config.auth.jwt_secret
    if config.environment == "production":
        if secret is None:
            layers.problems.append(ConfigProblem(
                "auth.jwt_secret", layers.source_of(("auth", "jwt_secret")),
                "production needs a JWT secret of at least 32 bytes; set JWT_SECRET or "
                "INSTALLSURE_AUTH_JWT_SECRET (e.g. from `python -c \"import secrets; "
                "print(secrets.token_urlsafe(48))\"`)",
            ))
        elif len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            layers.problems.append(ConfigProblem(
                "auth.jwt_secret", layers.source_of(("auth", "jwt_secret")),
                f"the JWT secret is {len(secret.encode())} bytes; production needs at least "
                f"{MIN_JWT_SECRET_BYTES}",
            ))
    if config.redis.sentinels and not config.redis.master_name:
        layers.problems.append(ConfigProblem(
            "redis.master_name", layers.source_of(("redis", "sentinels")),
            "redis.sentinels needs redis.master_name (the name the sentinels monitor)",
        ))
    for sentinel in config.redis.sentinels:
        host, _, port = sentinel.rpartition(":")
        try:
            parse_port(port)
        except ValueError:
            host = ""
        if not host:
            layers.problems.append(ConfigProblem(
                "redis.sentinels", layers.source_of(("redis", "sentinels")),
                f"{sentinel!r} is not host:port",
            ))
    if config.redis.url and config.redis.sentinels:
        layers.problems.append(ConfigProblem(
            "redis.url", layers.source_of(("redis", "url")),
            "set either redis.url or redis.sentinels, not both",
        ))
    if config.storage.backend == "s3" and not config.storage.s3_bucket:
        layers.problems.append(ConfigProblem(
            "storage.s3_bucket", layers.source_of(("storage", "backend")),
            "the s3 storage backend needs storage.s3_bucket",
        ))
