"""Checks the types alone cannot make: endpoints that parse, rules across settings."""

from __future__ import annotations

import importlib.util

from installsure.auth.settings import auth_problems
from installsure.config.errors import ConfigProblem
from installsure.config.layers import Layers
from installsure.config.schema import Config
from installsure.config.secret_strength import (
    HOW_TO_MAKE_ONE,
    MIN_SECRET_BYTES,
    secret_weakness,
)
from installsure.config.values import parse_port, parse_string_tuple

# The old system's names first: they are what an operator coming from it has set.
_SECRET_NAMES = {"jwt_secret": ("JWT", "JWT_SECRET"), "api_secret": ("API", "API_SECRET")}


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
    if config.environment == "production":
        _check_production_secrets(config, layers)
    for key, message in auth_problems(config.auth):
        layers.problems.append(ConfigProblem(
            f"auth.{key}", layers.source_of(("auth", key)), message))
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
    if config.shutdown_delay >= config.shutdown.grace and config.shutdown_delay > 0:
        set_here = config.shutdown.delay is not None
        layers.problems.append(ConfigProblem(
            "shutdown.delay",
            layers.source_of(("shutdown", "delay" if set_here else "grace")),
            f"the delay ({config.shutdown_delay:g} s"
            f"{'' if set_here else f', the {config.environment} default'}) must be shorter "
            f"than shutdown.grace ({config.shutdown.grace:g} s): it is spent out of the "
            "grace, and requests need the rest to finish. Lower shutdown.delay or raise "
            "shutdown.grace",
        ))
    if config.storage.backend == "s3" and not config.storage.s3_bucket:
        layers.problems.append(ConfigProblem(
            "storage.s3_bucket", layers.source_of(("storage", "backend")),
            "the s3 storage backend needs storage.s3_bucket",
        ))
    if config.storage.backend == "s3" and importlib.util.find_spec("boto3") is None:
        layers.problems.append(ConfigProblem(
            "storage.backend", layers.source_of(("storage", "backend")),
            "the s3 storage backend needs boto3: pip install 'installsure[s3]'",
        ))


def _check_production_secrets(config: Config, layers: Layers) -> None:
    """Production signs with a real secret: present (the JWT one), long, not a
    placeholder or a pattern. Checked for every secret, so each problem shows at once."""
    for key, (label, old_name) in _SECRET_NAMES.items():
        secret = getattr(config.auth, key)
        source = layers.source_of(("auth", key))
        if secret is None:
            # An EdDSA or RS256 deployment signs with its key file instead.
            if key == "jwt_secret" and config.auth.jwt_algorithm == "HS256":
                layers.problems.append(ConfigProblem(
                    f"auth.{key}", source,
                    f"production needs a {label} secret of at least {MIN_SECRET_BYTES} bytes; "
                    f"set {old_name} or INSTALLSURE_AUTH_{key.upper()} ({HOW_TO_MAKE_ONE})",
                ))
            continue  # no operator token: the admin routes answer 401
        if (weakness := secret_weakness(secret)) is not None:
            layers.problems.append(ConfigProblem(
                f"auth.{key}", source,
                f"the {label} secret {weakness}; production needs a random one: "
                f"{HOW_TO_MAKE_ONE}",
            ))
