"""The Redis client service: pooled commands, Lua scripts, blocking connections, pub/sub.

Every call is bounded: while Redis is down txredisapi would wait forever, so a command
fails with :class:`RedisUnavailable` after ``command_timeout`` seconds (or at once when
the connection is known to be down) and the caller decides whether to retry.

The service owns the connections; the parts that use them are modules of their own and
get what they need passed in: ``scripts`` (EVALSHA with reload), ``blocking``
(connections for blocking commands), ``pubsub`` (subscriptions that survive reconnects).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure.redis._execute import run_on
from installsure.redis._link import _Link
from installsure.redis.blocking import BlockingConnection
from installsure.redis.interfaces import (
    GapCallback,
    MessageCallback,
    RedisArg,
    RedisUnavailable,
    Subscription,
)
from installsure.redis.pubsub import Subscriber
from installsure.redis.scripts import LuaScriptHandle
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
        self._connected_callbacks: list[Callable[[], object]] = []
        self._pool = self._new_pool()
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
        closing += [b.disconnect() for b in list(self._blocking)]
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
        self._pool = self._new_pool()
        d = defer.gatherResults(closing, consumeErrors=True)
        return d.addBoth(lambda _: None)

    def _new_pool(self) -> _Link:
        pool = self._new_link("pool", self.pool_size, self.command_timeout)
        pool.on_connection.append(self._pool_connected)
        return pool

    def _pool_connected(self, _conn: object) -> None:
        for callback in list(self._connected_callbacks):
            try:
                callback()
            except Exception:
                log.failure("a Redis on-connected callback failed")

    def on_connected(self, callback: Callable[[], object]) -> Callable[[], None]:
        """See ``RedisCommands.on_connected``."""
        self._connected_callbacks.append(callback)

        def remove() -> None:
            if callback in self._connected_callbacks:
                self._connected_callbacks.remove(callback)

        return remove

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
            return run_on(self._pool, conn, self.command_timeout, (command, *args))  # type: ignore[no-any-return]
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
            return run_on(self._pool, conn, self.command_timeout, args)  # type: ignore[no-any-return]
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
            if known.source != source:
                raise ValueError(f"a different Lua script is already registered as {name!r}")
            return known
        handle = self._scripts[name] = LuaScriptHandle(self._execute_trusted, name, source)
        return handle

    def blocking_connection(self) -> BlockingConnection:
        """A new connection of its own; close() it when done (stopService closes the rest)."""
        link = self._new_link("blocking", 1, None, quiet=True)
        connection = BlockingConnection(link, self._reactor, self._blocking.discard)
        self._blocking.add(connection)
        self._start_link(link)
        return connection

    # --- pub/sub

    def publish(self, channel: str, message: str) -> defer.Deferred[int]:
        return self.execute("PUBLISH", channel, message).addCallback(int)

    def _get_subscriber(self) -> Subscriber:
        if self._subscriber is None:
            self._subscriber = Subscriber(
                partial(self._new_link, "pub/sub", 1, None),
                target=self.target,
                reactor=self._reactor,
                timeout=self.command_timeout,
                health_interval=self.pubsub_health_interval,
            )
            self._start_link(self._subscriber.link)
        return self._subscriber

    def subscribe(self, channel: str, callback: MessageCallback, *,
                  on_gap: GapCallback | None = None) -> defer.Deferred[Subscription]:
        return self._get_subscriber().add(False, channel, callback, on_gap=on_gap)

    def psubscribe(self, pattern: str, callback: MessageCallback, *,
                   on_gap: GapCallback | None = None) -> defer.Deferred[Subscription]:
        return self._get_subscriber().add(True, pattern, callback, on_gap=on_gap)
