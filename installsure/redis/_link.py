"""One self-healing group of connections to Redis, built on txredisapi's factories.

txredisapi (1.6) keeps each connection of a pool alive with a ``ClientService``; this
module adds what InstallSure needs around it: an endpoint for every kind of
:class:`RedisTarget`, a bounded backoff, one log line when the link goes down and one when
it comes back (instead of ClientService's line per retry), and a cheap way to pick a live
connection without txredisapi's per-call ``inlineCallbacks`` machinery.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import txredisapi
from twisted.application.internet import ClientService
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from installsure._compat import PoolSlot, SentinelEndpoint, SlotFactory
from installsure.redis._protocol import _Protocol, _SentinelProtocol
from installsure.redis.interfaces import LONGEST_RECONNECT_DELAY, RedisUnavailable
from installsure.redis.target import RedisTarget

log = Logger(namespace="installsure.redis")

# Delays between reconnection attempts: 0.2 s, 0.5 s, then 1 s (with txredisapi's
# jitter). Short, so that after an outage every process is back within about a second
# of Redis: the job runner's leases count on it (a worker that came back late would
# find its jobs given away); an attempt to a Redis that is down costs next to nothing.
RECONNECT_INITIAL_DELAY = 0.2
RECONNECT_MAX_DELAY = LONGEST_RECONNECT_DELAY


@implementer(ILogObserver)
def _drop_retry_chatter(event: dict[str, Any]) -> None:
    # ClientService logs every scheduled retry at info; _Link reports the outage once.
    if event.get("log_level") not in (LogLevel.debug, LogLevel.info):
        globalLogPublisher(event)


class _QuietClientService(ClientService):
    _log = Logger(namespace="installsure.redis.reconnect", observer=_drop_retry_chatter)


class _QuietSlot(PoolSlot):  # type: ignore[misc]
    def __init__(self, factory: Any, endpoint: Any, reconnect: bool = True) -> None:
        super().__init__(factory, endpoint, reconnect)
        self.service = _QuietClientService(
            endpoint,
            SlotFactory(factory, self),
            retryPolicy=self._retryDelay,
            prepareConnection=self._prepareConnection,
        )


class _LinkFactoryMixin:
    """Tells the owning :class:`_Link` when a connection joins or leaves the pool."""

    link: _Link
    pool: list[Any]
    slots: list[Any]
    reconnect: bool
    initialDelay = RECONNECT_INITIAL_DELAY
    maxDelay = RECONNECT_MAX_DELAY

    def startConnecting(self, endpoint: Any) -> None:
        for _ in range(self.poolsize):  # type: ignore[attr-defined]
            slot = _QuietSlot(self, endpoint, self.reconnect)
            self.slots.append(slot)
            slot.start()

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)  # type: ignore[misc]
        if conn in self.pool:
            self.link._connection_added(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)  # type: ignore[misc]
        self.link._connection_removed(conn)


class _PoolFactory(_LinkFactoryMixin, txredisapi.RedisFactory):  # type: ignore[misc]
    pass


class _SentinelPoolFactory(_LinkFactoryMixin, txredisapi.SentinelConnectionFactory):  # type: ignore[misc]
    pass


@implementer(IStreamClientEndpoint)
class _ObservedEndpoint:
    """Reports failed connection attempts, which ClientService keeps to itself."""

    def __init__(self, wrapped: IStreamClientEndpoint, link: _Link) -> None:
        self._wrapped = wrapped
        self._link = link

    def connect(self, protocolFactory: Any) -> defer.Deferred[Any]:
        d = self._wrapped.connect(protocolFactory)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Failure) -> Failure:
        if not isinstance(failure.value, defer.CancelledError):
            self._link._connect_failed(failure)
        return failure


@functools.lru_cache(maxsize=16)
def _tls_options(host: str, ca_file: str | None) -> Any:
    # Cached: blocking_connection() makes links at run time, on the reactor thread.
    if ca_file is None:
        return optionsForClientTLS(host)
    try:
        pem = Path(ca_file).read_bytes()
        authority = Certificate.loadPEM(pem)
    except OSError as e:
        raise ValueError(
            f"cannot read the Redis TLS CA file {ca_file!r}: {e.strerror or e}"
        ) from None
    except Exception:
        raise ValueError(
            f"the Redis TLS CA file {ca_file!r} does not hold a PEM certificate"
        ) from None
    return optionsForClientTLS(host, trustRoot=authority)


class _Link:
    """``size`` connections to one target, reconnecting forever until stopped.

    ``state`` is "connecting" until the first connection or failure, then "up" while at
    least one connection is usable and "down" while none is.
    """

    def __init__(
        self,
        target: RedisTarget,
        *,
        name: str,
        size: int,
        reply_timeout: float | None,
        connect_timeout: float,
        reactor: IReactorTime,
        sentinel: Callable[[], Any] | None = None,
        protocol: type[Any] | None = None,
        quiet: bool = False,
        credentials: str = "the password and database number in the Redis settings",
    ) -> None:
        """``credentials``: what to check when Redis refuses AUTH or SELECT, for the log."""
        self.target = target
        self._credentials = credentials
        self.name = name
        self.state = "connecting"
        self.last_error: str | None = None
        self.on_connection: list[Callable[[Any], object]] = []
        self._reactor = reactor
        self._sentinel = sentinel
        self._quiet = quiet
        self._stopping = False
        # Set when it will never connect (refused credentials, Redis that never came).
        self._dead = False
        self._ever_connected = False
        self._rr = 0
        self._waiting: list[defer.Deferred[None]] = []
        common: dict[str, Any] = {
            "dbid": target.db or None,
            "poolsize": size,
            "isLazy": True,
            "handler": txredisapi.ConnectionHandler,
            "charset": "utf-8",
            "password": target.password,
            "replyTimeout": reply_timeout,
            "convertNumbers": False,
            "username": target.username,
        }
        factory: Any
        if target.is_sentinel:
            factory = _SentinelPoolFactory(
                sentinel_manager=None,  # set by start(): it starts connecting at once
                service_name=target.master_name,
                is_master=True,
                uuid=None,
                **common,
            )
        else:
            factory = _PoolFactory(uuid=target.describe(), **common)
        if protocol is None:
            protocol = _SentinelProtocol if target.is_sentinel else _Protocol
        factory.protocol = protocol
        factory.link = self
        factory.tls = target.tls
        # txredisapi errbacks this when AUTH or SELECT is refused; it then stops trying.
        factory.deferred.addErrback(self._refused)
        self.factory = factory
        self._endpoint = _ObservedEndpoint(self._make_endpoint(connect_timeout), self)

    def _make_endpoint(self, connect_timeout: float) -> IStreamClientEndpoint:
        target = self.target
        if target.is_sentinel:
            return SentinelEndpoint(self.factory)  # type: ignore[no-any-return]
        if target.unix_socket is not None:
            return UNIXClientEndpoint(  # type: ignore[no-untyped-call]
                self._reactor, target.unix_socket, timeout=connect_timeout
            )
        if target.host is None:  # pragma: no cover - RedisTarget's constructors prevent it
            raise ValueError("a Redis target needs a host, a unix socket or sentinels")
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, target.host, target.port, timeout=connect_timeout
        )
        if target.tls:
            endpoint = wrapClientTLS(_tls_options(target.host, target.tls_ca_file), endpoint)
        return endpoint

    def start(self) -> None:
        if self._sentinel is not None:
            self.factory.sentinel_manager = self._sentinel()
        self.factory.startConnecting(self._endpoint)

    def drop_connections(self) -> None:
        """Close every connection; they are remade (and Sentinel asked again)."""
        for conn in list(self.factory.pool):
            conn.transport.loseConnection()

    def fail_before_start(self, message: str) -> None:
        """This link will never start: fail whoever waits, and future callers at once."""
        self.state = "down"
        self._dead = True
        self.last_error = message
        self._fail_waiters(RedisUnavailable(self.unavailable_message()))

    def stop(self) -> defer.Deferred[None]:
        self._stopping = True
        self._fail_waiters(RedisUnavailable(f"the Redis {self.name} connection was closed"))
        d: defer.Deferred[None] = self.factory.disconnect()
        return d

    @property
    def connected(self) -> bool:
        return bool(self.factory.pool)

    def pick(self) -> Any:
        """A usable connection (round robin), or None."""
        pool = self.factory.pool
        n = len(pool)
        if n == 0:
            return None
        if n == 1:
            return pool[0]
        self._rr = i = (self._rr + 1) % n
        return pool[i]

    def when_connected(self, timeout: float) -> defer.Deferred[None]:
        """Fires once a connection is usable; RedisUnavailable after ``timeout`` seconds."""
        if self.factory.pool:
            return defer.succeed(None)
        if self._stopping:
            return defer.fail(RedisUnavailable(f"the Redis {self.name} connection is closed"))
        if self._dead:
            return defer.fail(RedisUnavailable(self.unavailable_message()))
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)

        def expire() -> None:
            if not d.called:
                self._waiting.remove(d)
                d.errback(RedisUnavailable(self.unavailable_message(timeout)))

        call = self._reactor.callLater(timeout, expire)

        def done(result: object) -> object:
            if call.active():
                call.cancel()
            return result

        d.addBoth(done)
        return d

    def unavailable_message(self, waited: float | None = None) -> str:
        where = self.target.describe()
        if waited is not None:
            text = f"Redis did not answer within {waited}s (is it running at {where}?)"
        else:
            text = f"Redis is not connected (is it running at {where}?)"
        if self.last_error:
            text += f"; last error: {self.last_error}"
        return text

    def _fail_waiters(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:  # a caller may have cancelled it
                d.errback(error)

    # --- events from the factory and the endpoint

    def _connection_added(self, conn: Any) -> None:
        was = self.state
        self.state = "up"
        self.last_error = None
        if len(self.factory.pool) == 1 and was != "up":
            level = log.debug if self._quiet else log.info
            if self._ever_connected:
                level("Redis {link} connection is back ({target})", link=self.name,
                      target=self.target.describe())
            else:
                level("Redis {link} connected to {target}", link=self.name,
                      target=self.target.describe())
        self._ever_connected = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:  # a caller may have cancelled it
                d.callback(None)
        for callback in list(self.on_connection):
            try:
                callback(conn)
            except Exception:
                log.failure("Redis {link} on-connection hook failed", link=self.name)

    def _connection_removed(self, conn: Any) -> None:
        if self.factory.pool or self._stopping or self.state != "up":
            return
        self.state = "down"
        level = log.debug if self._quiet else log.warn
        level("Redis {link} connection to {target} lost; reconnecting in the background",
              link=self.name, target=self.target.describe())

    def _connect_failed(self, failure: Failure) -> None:
        if self._stopping or self._dead:
            return
        self.last_error = failure.getErrorMessage()
        if self.state == "connecting":
            self.state = "down"
            level = log.debug if self._quiet else log.warn
            level("Cannot reach Redis at {target} ({error}); retrying in the background",
                  target=self.target.describe(), error=self.last_error)

    def _refused(self, failure: Failure) -> None:
        if self._stopping:
            return
        self.state = "down"
        self._dead = True
        self.last_error = failure.getErrorMessage()
        log.error("Redis at {target} refused the connection setup: {error}. Check "
                  "{credentials}; not retrying.",
                  target=self.target.describe(), error=self.last_error,
                  credentials=self._credentials)
        self._fail_waiters(RedisUnavailable(self.unavailable_message()))
