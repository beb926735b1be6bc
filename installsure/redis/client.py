"""The Redis client service: pooled commands, Lua scripts, blocking connections, pub/sub.

Every call is bounded: while Redis is down txredisapi would wait forever, so a command
fails with :class:`RedisUnavailable` after ``command_timeout`` seconds (or at once when
the connection is known to be down) and the caller decides whether to retry.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.redis._link import _Link
from installsure.redis.interfaces import (
    MessageCallback,
    RedisArg,
    RedisReplyError,
    RedisUnavailable,
    Subscription,
)
from installsure.redis.pubsub import Subscriber
from installsure.redis.target import RedisTarget

log = Logger(namespace="installsure.redis")

# Commands that would stall (or take over) a pooled connection shared by other callers.
_NOT_ON_POOL = frozenset(
    {
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
        "BZMPOP", "XREAD", "XREADGROUP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE",
        "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "MONITOR", "MULTI", "EXEC",
        "DISCARD", "WATCH", "UNWATCH", "SELECT", "QUIT", "RESET",
    }
)


# Error replies that mean "this Redis cannot serve you right now", not "bad command":
# loading its dataset after a restart, a replica cut off from its master, or a master
# demoted by a failover (we are talking to a replica now).
_TRANSIENT = ("LOADING", "MASTERDOWN", "READONLY")


def _map_failure(failure: Failure, link: _Link, timeout: float | None) -> Failure:
    """txredisapi's errors as ours: the caller should not need to import txredisapi."""
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


def _run_on(link: _Link, conn: Any, timeout: float | None, args: tuple[Any, ...]) -> Any:
    try:
        d = conn.execute_command(*args)
    except txredisapi.ConnectionError:
        return defer.fail(RedisUnavailable(link.unavailable_message()))
    except (TypeError, ValueError) as e:
        # A bad argument: nothing was sent, the connection is still in step.
        return defer.fail(e)
    d.addErrback(_map_failure, link, timeout)
    return d


class LuaScriptHandle:
    """A registered script: EVALSHA, and on NOSCRIPT load it again and retry once."""

    __slots__ = ("_loading", "_redis", "_source", "loaded", "name", "sha")

    def __init__(self, redis: RedisService, name: str, source: str) -> None:
        self._redis = redis
        self._source = source
        self.name = name
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self.loaded = False
        # Callers waiting for the SCRIPT LOAD in flight: thousands of calls arriving
        # together (at start, or after a Redis restart) share one load.
        self._loading: list[defer.Deferred[None]] | None = None

    def __call__(self, keys: Sequence[str], args: Sequence[RedisArg]) -> defer.Deferred[Any]:
        if not self.loaded:
            return self._load().addCallback(lambda _: self._evalsha(keys, args, True))
        return self._evalsha(keys, args, True)

    def _evalsha(
        self, keys: Sequence[str], args: Sequence[RedisArg], retry: bool
    ) -> defer.Deferred[Any]:
        d = self._redis._execute_trusted(("EVALSHA", self.sha, len(keys), *keys, *args))
        if retry:
            d.addErrback(self._noscript, keys, args)
        return d

    def _noscript(
        self, failure: Failure, keys: Sequence[str], args: Sequence[RedisArg]
    ) -> Any:
        # Redis forgets scripts on restart, failover and SCRIPT FLUSH.
        error = failure.value
        if isinstance(error, RedisReplyError) and error.code == "NOSCRIPT":
            self.loaded = False
            return self._load().addCallback(lambda _: self._evalsha(keys, args, False))
        return failure

    def _load(self) -> defer.Deferred[None]:
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._loading is not None:
            self._loading.append(waiter)
            return waiter
        self._loading = [waiter]
        self._redis._execute_trusted(("SCRIPT", "LOAD", self._source)).addBoth(self._loaded)
        return waiter

    def _loaded(self, result: object) -> None:
        waiting, self._loading = self._loading or [], None
        error: Failure | Exception | None = None
        if isinstance(result, Failure):
            error = result
        elif result != self.sha:  # pragma: no cover - would be a Redis bug
            error = RedisReplyError(f"SCRIPT LOAD of {self.name} returned {result!r}")
        if error is not None:
            for d in waiting:
                d.errback(error)
            return
        self.loaded = True
        for d in waiting:
            d.callback(None)

    def __repr__(self) -> str:
        return f"<LuaScript {self.name} {self.sha[:12]}>"


class BlockingConnection:
    """One connection of its own for blocking commands (BLMOVE, BZPOPMIN, XREAD BLOCK).

    Commands on it run one after the other; a command that gets no reply within its
    ``timeout`` fails with RedisUnavailable and the connection is dropped and remade,
    because its reply would otherwise arrive in the place of the next command's. While
    the connection is down a command waits for it, within the same ``timeout``.
    """

    def __init__(self, redis: RedisService, link: _Link) -> None:
        self._redis = redis
        self._link = link

    @property
    def is_connected(self) -> bool:
        return self._link.connected

    def execute(self, command: str, *args: RedisArg, timeout: float) -> defer.Deferred[Any]:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        conn = self._link.pick()
        if conn is not None:
            return self._run(conn, timeout, timeout, (command, *args))
        # Reconnecting (or just made): spend the command's own time budget waiting for
        # the connection, so that a caller looping on blocking pops does not spin while
        # Redis is down.
        started = self._redis._reactor.seconds()

        def connected(_: object) -> defer.Deferred[Any]:
            conn = self._link.pick()
            if conn is None:
                return defer.fail(RedisUnavailable(self._link.unavailable_message()))
            left = timeout - (self._redis._reactor.seconds() - started)
            return self._run(conn, max(left, 0.001), timeout, (command, *args))

        return self._link.when_connected(timeout).addCallback(connected)

    def _run(
        self, conn: Any, timeout: float, shown: float, args: tuple[Any, ...]
    ) -> defer.Deferred[Any]:
        link = self._link
        reply = _run_on(link, conn, None, args)

        def drop_connection() -> None:
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abortConnection()

        def cancel(result: defer.Deferred[Any]) -> None:
            # The command is still pending inside Redis; only closing the connection
            # makes sure its late reply cannot be taken for another command's.
            drop_connection()

        result: defer.Deferred[Any] = defer.Deferred(cancel)

        def expire() -> None:
            if not result.called:
                result.errback(RedisUnavailable(link.unavailable_message(shown)))
                drop_connection()

        call = self._redis._reactor.callLater(timeout, expire)

        def settle(value: object) -> None:
            if call.active():
                call.cancel()
            if result.called:
                return
            if isinstance(value, Failure):
                result.errback(value)
            else:
                result.callback(value)

        reply.addBoth(settle)
        return result

    def close(self) -> defer.Deferred[None]:
        self._redis._blocking.discard(self)
        return self._link.stop()


#: What Redis answers a client that did not (or wrongly) authenticate.
_AUTH_ERRORS = ("NOAUTH", "WRONGPASS", "invalid password", "Authentication required")


class _Sentinels(txredisapi.Sentinel):  # type: ignore[misc]
    """txredisapi's master discovery over our own (quiet, bounded) sentinel connections.

    Discovery says why it found no master: txredisapi drops the Sentinels' errors and
    reports only "No master found", which hides e.g. a Sentinel asking for a password.
    """

    def __init__(self, links: list[_Link], reactor: IReactorTime) -> None:
        self._links = links
        self._reactor = reactor
        self.sentinels = [link.factory.handler for link in links]
        self.min_other_sentinels = 0

    def discover_master(self, service_name: str) -> defer.Deferred[tuple[str, int]]:
        """The address of the first Sentinel's healthy master named ``service_name``,
        or MasterNotFoundError after ``discovery_timeout`` with what the Sentinels said."""
        found: defer.Deferred[tuple[str, int]] = defer.Deferred()
        problems: dict[str, str] = {}

        def answered(masters: dict[str, Any]) -> None:
            state = masters.get(service_name)
            if not found.called and state and self.check_master_state(state):
                give_up.cancel()
                found.callback((state["ip"], int(state["port"])))

        def failed(failure: Failure, link: _Link) -> None:
            problems[link.name] = failure.getErrorMessage()

        def no_master() -> None:
            if found.called:
                return
            for link in self._links:
                # A Sentinel that refused our AUTH has no connection to ask on.
                if link.name not in problems and link.last_error:
                    problems[link.name] = link.last_error
            message = f"No master found for {service_name}"
            if problems:
                message += " (" + "; ".join(f"{n}: {e}" for n, e in problems.items()) + ")"
            if any(hint in error for error in problems.values() for hint in _AUTH_ERRORS):
                if any(link.target.password for link in self._links):
                    message += ". The Sentinels refused redis.sentinel_password: check it"
                else:
                    message += (
                        ". The Sentinels ask for a password of their own: set "
                        "redis.sentinel_password (INSTALLSURE_REDIS_SENTINEL_PASSWORD)"
                    )
            found.errback(txredisapi.MasterNotFoundError(message))

        # Scheduled first: a Sentinel's answer is what cancels it.
        give_up = self._reactor.callLater(self.discovery_timeout, no_master)
        for link, sentinel in zip(self._links, self.sentinels, strict=True):
            sentinel.sentinel_masters().addCallbacks(answered, failed, errbackArgs=(link,))
        return found

    def disconnect(self) -> defer.Deferred[None]:
        d = defer.gatherResults([link.stop() for link in self._links], consumeErrors=True)
        return d.addCallback(lambda _: None)


class RedisService(Service):
    """Connections to one Redis deployment for the whole process (see module docstring)."""

    #: Seconds between liveness PINGs on the pub/sub connection.
    pubsub_health_interval = 15.0

    def __init__(
        self,
        target: RedisTarget,
        *,
        command_timeout: float = 5.0,
        pool_size: int = 4,
        key_prefix: str = "is:",
        connect_timeout: float = 5.0,
        reactor: IReactorTime | None = None,
        start_after: Callable[[], defer.Deferred[Any]] | None = None,
    ) -> None:
        """``start_after``: connect only once the Deferred it returns has fired, e.g.
        ``EmbeddedRedisService.when_running`` (MultiService starts children at once)."""
        if command_timeout <= 0:
            raise ValueError(f"redis command_timeout must be positive, not {command_timeout!r}")
        if connect_timeout <= 0:
            raise ValueError(f"redis connect_timeout must be positive, not {connect_timeout!r}")
        if not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"redis pool_size must be an integer >= 1, not {pool_size!r}")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.target = target
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self.key_prefix = key_prefix
        self._reactor = reactor
        self._sentinel: Any = None
        self._scripts: dict[str, LuaScriptHandle] = {}
        self._blocking: set[BlockingConnection] = set()
        self._start_after = start_after
        self._gate_open = start_after is None
        self._gate_error: str | None = None
        self._unstarted: list[_Link] = []
        self._pool = self._new_link("pool", pool_size, command_timeout)
        self._subscriber: Subscriber | None = None

    # --- service

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        # The pool first; then connections asked for before the service started.
        self._unstarted.insert(0, self._pool)
        if self._start_after is None:
            self._open_gate(None)
        else:
            self._start_after().addCallbacks(self._open_gate, self._gate_failed)

    def _start_link(self, link: _Link) -> None:
        if self._gate_open and self.running:
            link.start()
        elif self._gate_error is not None:
            link.fail_before_start(self._gate_error)
        else:
            self._unstarted.append(link)

    def _open_gate(self, _: object) -> None:
        self._gate_open = True
        waiting, self._unstarted = self._unstarted, []
        if self.running:
            for link in waiting:
                link.start()

    def _gate_failed(self, failure: Failure) -> None:
        self._gate_error = f"Redis never became available: {failure.getErrorMessage()}"
        log.error("not connecting to Redis at {target}: {error}",
                  target=self.target.describe(), error=failure.getErrorMessage())
        waiting, self._unstarted = self._unstarted, []
        for link in waiting:
            link.fail_before_start(self._gate_error)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        closing = [self._pool.stop()]
        closing += [b._link.stop() for b in list(self._blocking)]
        self._blocking.clear()
        if self._subscriber is not None:
            closing.append(self._subscriber.stop())
        if self._sentinel is not None:
            closing.append(self._sentinel.disconnect())
        # Fresh, unstarted connections in case the service is started again; until then
        # commands fail at once. Subscriptions do not survive a stop.
        self._subscriber = None
        self._sentinel = None
        self._gate_open = self._start_after is None
        self._gate_error = None
        self._unstarted = []
        self._pool = self._new_link("pool", self.pool_size, self.command_timeout)
        d = defer.gatherResults(closing, consumeErrors=True)
        return d.addBoth(lambda _: None)

    def _new_link(
        self, name: str, size: int, reply_timeout: float | None, **kw: Any
    ) -> _Link:
        return _Link(
            self.target,
            name=name,
            size=size,
            reply_timeout=reply_timeout,
            connect_timeout=self.connect_timeout,
            reactor=self._reactor,
            sentinel=self._sentinel_manager if self.target.is_sentinel else None,
            **kw,
        )

    def _sentinel_manager(self) -> Any:
        """The connections to the Sentinels, shared by every link; made on first use."""
        if self._sentinel is None:
            links = [
                _Link(
                    RedisTarget(host=host, port=port, password=self.target.sentinel_password),
                    name=f"sentinel {host}:{port}",
                    size=1,
                    reply_timeout=self.command_timeout,
                    connect_timeout=self.connect_timeout,
                    reactor=self._reactor,
                    quiet=True,
                    credentials="redis.sentinel_password",
                )
                for host, port in self.target.sentinels
            ]
            for link in links:
                link.start()
            self._sentinel = _Sentinels(links, self._reactor)
            # How long to wait for a Sentinel to name a healthy master before trying again:
            # during a failover no master is healthy and a long wait only delays
            # noticing the promoted one.
            self._sentinel.discovery_timeout = min(self.connect_timeout, 2.0)
        return self._sentinel

    # --- state

    @property
    def is_connected(self) -> bool:
        """At least one pooled connection is up (it may still turn out dead on use)."""
        return self._pool.connected

    @property
    def status(self) -> dict[str, object]:
        """For health reports: where, whether connected, and the last connection error."""
        return {
            "target": self.target.describe(),
            "state": self._pool.state,
            "connections": len(self._pool.factory.pool),
            "poolSize": self.pool_size,
            "lastError": self._pool.last_error,
        }

    def when_connected(self, timeout: float | None = None) -> defer.Deferred[None]:
        """Fires when the pool has a connection; RedisUnavailable after ``timeout``."""
        return self._pool.when_connected(self.connect_timeout if timeout is None else timeout)

    def key(self, *parts: str) -> str:
        return self.key_prefix + ":".join(parts)

    # --- commands

    def execute(self, command: str, *args: RedisArg) -> defer.Deferred[Any]:
        """Run one command on the pool; see the module docstring for the failure modes."""
        conn = self._pool.pick()
        if conn is not None:
            if command.upper() in _NOT_ON_POOL:
                return self._refuse(command)
            return _run_on(self._pool, conn, self.command_timeout, (command, *args))  # type: ignore[no-any-return]
        if command.upper() in _NOT_ON_POOL:
            return self._refuse(command)
        if self._pool.state != "connecting" or not self.running:
            return defer.fail(RedisUnavailable(self._pool.unavailable_message()))
        # Just started: wait for the first connection rather than fail a caller that
        # merely came early.
        return self._pool.when_connected(self.command_timeout).addCallback(
            lambda _: self.execute(command, *args)
        )

    def _execute_trusted(self, args: tuple[Any, ...]) -> defer.Deferred[Any]:
        # The hot path of Lua scripts: the command is known to be fine on the pool.
        conn = self._pool.pick()
        if conn is not None:
            return _run_on(self._pool, conn, self.command_timeout, args)  # type: ignore[no-any-return]
        return self.execute(*args)

    def _refuse(self, command: str) -> defer.Deferred[Any]:
        return defer.fail(
            ValueError(
                f"{command.upper()} cannot run on the shared connection pool: use "
                "blocking_connection() for blocking commands, subscribe()/psubscribe() "
                "for pub/sub, and a Lua script() instead of MULTI/WATCH"
            )
        )

    def ping(self) -> defer.Deferred[float]:
        """Round-trip time of a PING in milliseconds."""
        started = time.perf_counter()
        return self.execute("PING").addCallback(
            lambda _: (time.perf_counter() - started) * 1000.0
        )

    def script(self, name: str, source: str) -> LuaScriptHandle:
        """The script registered under ``name`` (registered now if new)."""
        known = self._scripts.get(name)
        if known is not None:
            if known._source != source:
                raise ValueError(f"a different Lua script is already registered as {name!r}")
            return known
        handle = self._scripts[name] = LuaScriptHandle(self, name, source)
        return handle

    def blocking_connection(self) -> BlockingConnection:
        """A new connection of its own; close() it when done (stopService closes the rest)."""
        link = self._new_link("blocking", 1, None, quiet=True)
        connection = BlockingConnection(self, link)
        self._blocking.add(connection)
        self._start_link(link)
        return connection

    # --- pub/sub

    def publish(self, channel: str, message: str) -> defer.Deferred[int]:
        return self.execute("PUBLISH", channel, message).addCallback(int)

    def _get_subscriber(self) -> Subscriber:
        if self._subscriber is None:
            self._subscriber = Subscriber(self, self.pubsub_health_interval)
            self._start_link(self._subscriber._link)
        return self._subscriber

    def subscribe(self, channel: str, callback: MessageCallback) -> defer.Deferred[Subscription]:
        return self._get_subscriber().add(False, channel, callback)

    def psubscribe(self, pattern: str, callback: MessageCallback) -> defer.Deferred[Subscription]:
        return self._get_subscriber().add(True, pattern, callback)
