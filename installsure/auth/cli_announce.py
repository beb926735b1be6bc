"""Telling running servers, from a command-line tool, that sessions were revoked.

The tool has no reactor of its own running, so this runs one just long enough to
connect to the deployment's Redis (the same target the server would use: ``redis.url``,
Sentinels, or the embedded server's socket in the data directory), write the sessions
into the revocation set and announce them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from installsure.config import Config


def announce_revocations(config: Config, session_ids: Sequence[str], *,
                         timeout: float) -> str | None:
    """None when Redis has them, else why not (the caller warns)."""
    from twisted.internet import reactor as global_reactor

    from installsure.auth.revocation import SessionRevocations
    from installsure.redis.client import RedisService
    from installsure.redis.target import RedisTarget
    from installsure.service import redis_target

    reactor: Any = global_reactor
    if config.redis.url is None and not config.redis.sentinels:
        socket = config.data_path / "redis.sock"
        if not socket.exists():
            return f"no Redis URL is configured and no embedded Redis runs at {socket}"
        target = RedisTarget.for_unix_socket(str(socket))
    else:
        target = redis_target(config, None)
    redis = RedisService(target, command_timeout=timeout, connect_timeout=timeout,
                         pool_size=1, key_prefix=config.redis.key_prefix, reactor=reactor)
    revocations = SessionRevocations(redis, access_token_ttl=config.auth.access_token_ttl,
                                     cache_ttl=0, reactor=reactor)
    outcome: list[str | None] = []

    async def run() -> None:
        try:
            await redis.when_connected(timeout)
            await revocations.revoke(session_ids)
            outcome.append(None)
        except Exception as error:  # any failure is reported, not raised
            outcome.append(str(error) or type(error).__name__)
        finally:
            await redis.stopService()

    def start() -> None:
        from twisted.internet.defer import Deferred

        redis.startService()
        Deferred.fromCoroutine(run()).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return outcome[0] if outcome else "the reactor stopped early"
