"""Lua scripts by EVALSHA: loaded once, loaded again when Redis forgot them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from installsure.redis.interfaces import RedisArg, RedisReplyError

Execute = Callable[[tuple[Any, ...]], defer.Deferred[Any]]
"""Runs one command (its words as a tuple) and fires with the reply."""


class LuaScriptHandle:
    """A registered script: EVALSHA, and on NOSCRIPT load it again and retry once.

    ``execute`` runs a command on a connection that may take EVALSHA and SCRIPT LOAD.
    """

    __slots__ = ("_execute", "_loading", "_source", "loaded", "name", "sha")

    def __init__(self, execute: Execute, name: str, source: str) -> None:
        self._execute = execute
        self._source = source
        self.name = name
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self.loaded = False
        # Callers waiting for the SCRIPT LOAD in flight: thousands of calls arriving
        # together (at start, or after a Redis restart) share one load.
        self._loading: list[defer.Deferred[None]] | None = None

    @property
    def source(self) -> str:
        return self._source

    def __call__(self, keys: Sequence[str], args: Sequence[RedisArg]) -> defer.Deferred[Any]:
        if not self.loaded:
            return self._load().addCallback(lambda _: self._evalsha(keys, args, True))
        return self._evalsha(keys, args, True)

    def _evalsha(
        self, keys: Sequence[str], args: Sequence[RedisArg], retry: bool
    ) -> defer.Deferred[Any]:
        d = self._execute(("EVALSHA", self.sha, len(keys), *keys, *args))
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
        self._execute(("SCRIPT", "LOAD", self._source)).addBoth(self._loaded)
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
