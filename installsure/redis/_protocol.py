"""Our connections' protocol: txredisapi's, with strict argument encoding, a faster
command builder, commands sent at once while a reply is handled, and TLS connections
that count as made only once a first round trip proves the handshake.
"""

from __future__ import annotations

import math
from typing import Any

import txredisapi
from twisted.python.failure import Failure


def _encode(arg: object, errors: str = "strict") -> bytes:
    """One argument as Redis sees it; anything that is not plainly a value is refused.

    txredisapi would send ``str(None)`` as the text "None" and round floats to six
    decimals; both would silently store something other than what the caller meant.
    """
    if isinstance(arg, str):
        try:
            # str.encode, not str(): a str-based enum member sends its value.
            return str.encode(arg, "utf-8", errors)
        except UnicodeEncodeError as e:
            raise ValueError(f"Redis argument {arg!r:.60} is not valid Unicode: {e}") from None
    if isinstance(arg, bytes | bytearray | memoryview):
        return bytes(arg)
    if isinstance(arg, bool):
        raise TypeError(f"Redis arguments cannot be bool ({arg!r}); send 1/0 or a string")
    if isinstance(arg, int):
        return b"%d" % arg
    if isinstance(arg, float):
        if math.isnan(arg):
            raise ValueError("NaN cannot be sent to Redis")
        return repr(float(arg)).encode()
    raise TypeError(
        f"Redis arguments must be str, bytes, int or float, not {type(arg).__name__} "
        f"({arg!r:.60})"
    )


class _ReplyHandling:
    """Whether this (the reactor) thread is handling Redis replies right now."""

    depth = 0


class _ProtocolMixin:
    """What every connection of ours adds to txredisapi's protocol."""

    errors: str
    factory: Any
    transport: Any
    _ready: bool

    def _encode_value(self, arg: object) -> bytes:
        return _encode(arg, self.errors)

    def _build_command(self, *args: object, **kwargs: object) -> bytes:
        # The hot path of every command, several times faster than txredisapi's.
        parts = [b"*%d\r\n" % len(args)]
        append = parts.append
        data: bytes
        for arg in args:
            kind = type(arg)
            if kind is str:
                try:
                    data = arg.encode()  # type: ignore[attr-defined]
                except UnicodeEncodeError:
                    data = _encode(arg, self.errors)
            elif kind is bytes:
                data = arg  # type: ignore[assignment]
            elif kind is int:
                data = b"%d" % arg  # type: ignore[str-format]
            else:
                data = _encode(arg, self.errors)
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
        return b"".join(parts)

    def dataReceived(self, data: bytes, unpause: bool = False) -> Any:
        _ReplyHandling.depth += 1
        try:
            return super().dataReceived(data, unpause)  # type: ignore[misc]
        finally:
            _ReplyHandling.depth -= 1

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Send a command; one sent while a reply is handled goes out at once.

        Twisted writes what a protocol wrote on its next turn, after everything read
        in this one has been handled. A command sent in answer to a reply (the job
        runner's next claim, the next batch of enqueues) would then wait for every
        other reply read with it, and Redis would sit idle meanwhile: sent at once,
        Redis runs it while this process handles the rest, and the two work side by
        side instead of in turn."""
        result = super().execute_command(*args, **kwargs)  # type: ignore[misc]
        if _ReplyHandling.depth:
            transport = self.transport
            # Plain TCP and Unix connections; a TLS transport has no doWrite and writes
            # when its own turn comes.
            do_write = getattr(transport, "doWrite", None)
            if do_write is not None and not transport.disconnecting:
                # A failure to write leaves the data buffered: the reactor's own write
                # meets the same error and closes the connection as usual.
                do_write()
        return result

    def connectionMade(self) -> Any:
        if not getattr(self.factory, "tls", False):
            return super().connectionMade()  # type: ignore[misc]
        # Over TLS the protocol is connected before the handshake; without AUTH or
        # SELECT it would count as usable at once, and a certificate that fails to
        # verify would look like a connection lost right after it was made. A first
        # round trip proves the handshake.
        try:
            first = self.execute_command("PING")
        except txredisapi.ConnectionError:
            return None
        return first.addCallbacks(
            lambda _: super(_ProtocolMixin, self).connectionMade(),  # type: ignore[misc]
            lambda _: None,  # connectionLost says why
        )

    def connectionLost(self, why: Failure) -> None:
        usable = self._ready
        super().connectionLost(why)  # type: ignore[misc]
        link = getattr(self.factory, "link", None)
        if not usable and link is not None:
            # Dropped before it was usable (TLS handshake refused, server closing on us):
            # to ClientService that was a connection, to us a failed attempt.
            link._connect_failed(why)


class _Protocol(_ProtocolMixin, txredisapi.RedisProtocol):  # type: ignore[misc]
    pass


class _SentinelProtocol(_ProtocolMixin, txredisapi.SentinelRedisProtocol):  # type: ignore[misc]
    pass
