"""One command on one txredisapi connection, failing with our errors, not txredisapi's:
callers should not need to import txredisapi."""

from __future__ import annotations

from typing import Any

import txredisapi
from twisted.internet import defer
from twisted.python.failure import Failure

from installsure.redis._link import _Link
from installsure.redis.interfaces import RedisReplyError, RedisUnavailable

# Error replies that mean "this Redis cannot serve you right now", not "bad command":
# loading its dataset after a restart, a replica cut off from its master, or a master
# demoted by a failover (we are talking to a replica now).
_TRANSIENT = ("LOADING", "MASTERDOWN", "READONLY")


def map_failure(failure: Failure, link: _Link, timeout: float | None) -> Failure:
    """txredisapi's errors as ours."""
    error = failure.value
    if isinstance(error, txredisapi.ResponseError):
        message = str(error)
        if message.startswith(_TRANSIENT):
            if message.startswith("READONLY"):
                # Reconnecting asks Sentinel again and reaches the new master.
                link.drop_connections()
            raise RedisUnavailable(
                f"Redis at {link.target.describe()} cannot serve commands right now: {message}"
            ) from None
        raise RedisReplyError(message) from None
    if isinstance(error, txredisapi.TimeoutError):
        raise RedisUnavailable(link.unavailable_message(timeout)) from None
    if isinstance(error, txredisapi.ConnectionError):
        raise RedisUnavailable(
            f"lost the connection to Redis at {link.target.describe()} before it answered"
        ) from None
    return failure


def run_on(link: _Link, conn: Any, timeout: float | None, args: tuple[Any, ...]) -> Any:
    """Send ``args`` on ``conn``, one of ``link``'s connections."""
    try:
        d = conn.execute_command(*args)
    except txredisapi.ConnectionError:
        return defer.fail(RedisUnavailable(link.unavailable_message()))
    except (TypeError, ValueError) as e:
        # A bad argument: nothing was sent, the connection is still in step.
        return defer.fail(e)
    d.addErrback(map_failure, link, timeout)
    return d
