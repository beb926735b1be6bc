"""The drain service: the first thing to stop when the process is asked to stop.

It is added last to the service tree, so ``MultiService`` stops it first. The moment it
stops, ``is_draining()`` turns true (``/readyz`` answers 503, load balancers take the node
out), then every registered hook runs with the grace period it may use: closing
listeners, letting in-flight requests finish, saying GOODBYE to WAMP sessions. Job
workers drain themselves when their own service stops, right after.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

DrainHook = Callable[[float], "Deferred[object] | object"]
"""Called with the grace period in seconds; may return a Deferred."""

log = Logger()


def _log_hook_failure(failure: Failure, name: str) -> None:
    log.failure("drain hook {hook} failed", failure, hook=name)


@define(eq=False)
class DrainService(Service):
    grace: float
    _hooks: list[tuple[str, DrainHook]] = field(factory=list, init=False)
    _draining: bool = field(default=False, init=False)

    name = "drain"

    def is_draining(self) -> bool:
        return self._draining

    def add_hook(self, name: str, hook: DrainHook) -> None:
        """Run ``hook(grace)`` when the process starts draining."""
        self._hooks.append((name, hook))

    def stopService(self) -> Deferred[object]:
        super().stopService()  # type: ignore[no-untyped-call]
        self._draining = True
        log.info("draining: not ready any more, finishing in-flight work "
                 "within {grace}s", grace=self.grace)
        calls = []
        for name, hook in self._hooks:
            call = maybeDeferred(hook, self.grace)
            call.addErrback(_log_hook_failure, name)
            calls.append(call)
        done: Deferred[object] = DeferredList(calls).addCallback(lambda _: None)
        return done
