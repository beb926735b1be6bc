"""``twistd installsure-bench``: installsure's options and service, another authenticator."""

from __future__ import annotations

from twisted.application.service import IService

from installsure.tap import Options, load_from_options

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> IService:
    from bench_auth import BenchTokenAuthenticator

    from installsure.service import build_service

    config = load_from_options(options)
    if not config.auth.jwt_secret:
        raise SystemExit("installsure-bench: set JWT_SECRET, the key the benchmark's tokens "
                         "are signed with")
    secret = config.auth.jwt_secret
    return build_service(
        config, options,
        authenticator=lambda redis, _config: BenchTokenAuthenticator(secret, redis),
    )
