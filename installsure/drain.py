"""The drain service: what SIGTERM does, phase by phase, before the rest stops.

It is added last to the service tree, so it is the first to stop, and the tree waits
for it before stopping the job workers, the database and Redis (in that order). It
takes the process through four phases, each logged on one line with the counts of
that moment, the phase also in ``/metrics`` (``installsure_shutdown_phase``):

1. **announce**: ``/readyz`` answers 503 (:meth:`DrainService.is_draining`) while every
   other request is served as usual, for ``shutdown.delay`` seconds, so that a load
   balancer takes the node out before anything is refused. A second SIGTERM or SIGINT
   ends the delay (:meth:`DrainService.skip_delay`);
2. **stop accepting**: listeners close;
3. **drain connections**: every response from now on says ``Connection: close``;
   idle connections close; WAMP sessions are told GOODBYE;
4. **finish work**: in-flight requests and jobs get the rest of ``shutdown.grace``
   (counted from SIGTERM, the delay included); then what still runs is answered 503
   or put back on its queue, and the drain is over.

The parts with something to wind down are :class:`DrainParticipant` s, registered with
:meth:`DrainService.add`: the HTTP listeners (``installsure.listeners``), the job
workers (``installsure.service``), and the realtime broker when it comes, whose
:meth:`DrainParticipant.drain_connections` sends its sessions GOODBYE
(``wamp.close.system_shutdown``) and whose :meth:`DrainParticipant.finish` waits for
them to go until the deadline.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure import metrics

DrainHook = Callable[[float], "Deferred[object] | object"]
"""Called with the seconds of grace left; may return a Deferred."""

log = Logger()


class Phase(enum.IntEnum):
    """Where a shutdown is (the value of ``installsure_shutdown_phase``)."""

    SERVING = 0
    ANNOUNCING = 1
    CLOSING_LISTENERS = 2
    DRAINING_CONNECTIONS = 3
    FINISHING_WORK = 4
    #: The drain is over; the workers, the database and Redis stop.
    STOPPING_SERVICES = 5


PHASE = metrics.gauge(
    "installsure_shutdown_phase",
    "0 serving; on SIGTERM 1 announcing (/readyz 503), 2 closing listeners, 3 draining "
    "connections, 4 finishing work, 5 stopping services.",
)

#: The counts every phase line shows, in this order (0 when no participant has them).
_SHOWN_COUNTS = ("connections", "requests", "jobs")


class DrainParticipant:
    """A part with connections or work to wind down on SIGTERM.

    Register with :meth:`DrainService.add`; each method is called once, in this order,
    and does nothing unless overridden. Errors are logged and do not stop the drain.
    """

    name = "participant"

    def counts(self) -> Mapping[str, int]:
        """What it has open or running now, for the phase lines: ``connections``,
        ``requests``, ``jobs``, or names of its own (``sessions``)."""
        return {}

    def stop_accepting(self) -> Deferred[None] | None:
        """Phase 2: take no new connections; fires once they are refused."""
        return None

    def drain_connections(self) -> None:
        """Phase 3, right after every :meth:`stop_accepting` began: tell open
        connections to finish (``Connection: close``, WAMP GOODBYE); close idle ones."""

    def finish(self, deadline: float) -> Deferred[Mapping[str, int]] | Mapping[str, int] | None:
        """Phase 4: let work in progress finish until the reactor's clock reads
        ``deadline``, then end what is left; what it ended (``requests_cut``,
        ``connections_aborted``, ``jobs_returned``), for the last line."""
        return None


@define(eq=False)
class _HookParticipant(DrainParticipant):
    """A plain hook, run in phase 4 with the seconds of grace left."""

    name: str
    hook: DrainHook
    clock: Callable[[], float]

    def finish(self, deadline: float) -> Deferred[Mapping[str, int]]:
        return maybeDeferred(self.hook, max(0.0, deadline - self.clock())).addCallback(
            lambda _: {}
        )


def _answered() -> int:
    """HTTP requests answered so far by this process (every site, every status)."""
    return sum(metrics.HTTP_STATS.requests.values())


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


@define(eq=False)
class DrainService(Service):
    """See the module docstring. ``delay`` is ``shutdown.delay`` (0 for a process with
    no HTTP); ``grace`` is ``shutdown.grace``, the whole drain's budget."""

    grace: float
    delay: float = 0.0
    reactor: Any = None
    #: Called when the drain begins with a callable that ends the delay: the process
    #: points a second SIGTERM or SIGINT at it (installsure.process.StopSignals).
    on_begin: Callable[[Callable[[int], None]], None] | None = None
    #: Whether the stop is a fatal error's (installsure.process.stopping_on_error): then
    #: there is nothing to announce, since a process that never became ready or cannot
    #: go on gets no traffic worth waiting for, and the delay only keeps the operator
    #: waiting for the error's exit status.
    failing: Callable[[], bool] = lambda: False
    phase: Phase = field(default=Phase.SERVING, init=False)
    _participants: list[DrainParticipant] = field(factory=list, init=False)
    _draining: bool = field(default=False, init=False)
    _delay_call: IDelayedCall | None = field(default=None, init=False)
    _delay_over: Deferred[None] | None = field(default=None, init=False)
    _deadline: float = field(default=0.0, init=False)

    name = "drain"

    def __attrs_post_init__(self) -> None:
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        PHASE.set(Phase.SERVING)

    @property
    def clock(self) -> IReactorTime:
        clock: IReactorTime = self.reactor
        return clock

    def is_draining(self) -> bool:
        return self._draining

    def add(self, participant: DrainParticipant) -> None:
        """Wind ``participant`` down, with the others, when the process stops."""
        self._participants.append(participant)

    def add_hook(self, name: str, hook: DrainHook) -> None:
        """Run ``hook(seconds of grace left)`` in phase 4, beside the other work."""
        self.add(_HookParticipant(name, hook, self.clock.seconds))

    def counts(self) -> dict[str, int]:
        """The participants' counts, added up."""
        total: dict[str, int] = dict.fromkeys(_SHOWN_COUNTS, 0)
        for participant in self._participants:
            try:
                counted = participant.counts()
            except Exception:
                log.failure("counting what {name} has open failed", name=participant.name)
                continue
            for key, value in counted.items():
                total[key] = total.get(key, 0) + value
        return total

    def skip_delay(self, signal_number: int = 0) -> None:
        """End phase 1 now (a second SIGTERM or SIGINT); later, only say so."""
        call = self._delay_call
        if call is not None and call.active():
            call.cancel()
            log.info("shutdown: stop signal again, skipping the rest of the delay")
            self._end_delay()
        elif self._draining:
            left = max(0.0, self._deadline - self.clock.seconds())
            log.info("shutdown: already stopping (phase {phase}); what still runs in "
                     "{left:.1f} s is ended then", phase=int(self.phase), left=left)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._draining:
            return succeed(None)
        return Deferred.fromCoroutine(self._drain())

    # -- the phases -----------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        PHASE.set(phase)

    async def _drain(self) -> None:
        began = self.clock.seconds()
        self._deadline = began + self.grace
        self._draining = True
        if self.on_begin is not None:
            self.on_begin(self.skip_delay)
        answered_before = _answered()
        self._enter(Phase.ANNOUNCING)
        counts = self.counts()
        if self.delay > 0 and self.failing():
            log.info(
                "shutdown 1/4, announce: no delay, the process is stopping on an error; "
                "{summary}", delay=self.delay, summary=self._summary(counts), **counts,
            )
        elif self.delay > 0:
            log.info(
                "shutdown 1/4, announce: /readyz answers 503 for {delay:g} s while the "
                "rest is served; {summary}",
                delay=self.delay, summary=self._summary(counts), **counts,
            )
            await self._wait_delay()
        else:
            log.info(
                "shutdown 1/4, announce: no delay (shutdown.delay is 0, or nothing here "
                "serves HTTP); {summary}",
                delay=self.delay, summary=self._summary(counts), **counts,
            )

        self._enter(Phase.CLOSING_LISTENERS)
        closing = [self._call(p, "stop_accepting") for p in self._participants]
        # In the same reactor turn: no response goes out keep-alive once accepting stops.
        for participant in self._participants:
            self._call(participant, "drain_connections")
        await DeferredList(closing)
        counts = self.counts()
        log.info(
            "shutdown 2/4, stop accepting: listeners closed, {served} answered during "
            "the delay; {summary}",
            served=_answered() - answered_before,
            summary=self._summary(counts), **counts,
        )

        self._enter(Phase.DRAINING_CONNECTIONS)
        counts = self.counts()
        log.info(
            "shutdown 3/4, drain connections: every response now says Connection: close; "
            "{idle_text} idle, closing once quiet; {summary}",
            idle_text=_plural(counts.get("idle", 0), "connection"),
            summary=self._summary(counts), **counts,
        )

        self._enter(Phase.FINISHING_WORK)
        left = max(0.0, self._deadline - self.clock.seconds())
        log.info(
            "shutdown 4/4, finish work: {left:.1f} s of the grace left; {summary}",
            left=left, summary=self._summary(counts), **counts,
        )
        finishing = [self._call(p, "finish", self._deadline) for p in self._participants]
        results = await DeferredList(finishing)
        ended: dict[str, int] = {"requests_cut": 0, "connections_aborted": 0,
                                 "jobs_returned": 0}
        for _ok, result in results:
            if isinstance(result, Mapping):
                for key, value in result.items():
                    ended[key] = ended.get(key, 0) + int(value)
        self._enter(Phase.STOPPING_SERVICES)
        log.info(
            "shutdown: work finished {elapsed:.2f} s after the stop began: {cut} answered "
            "503 at the end of the grace, {aborted} aborted, {returned} returned to their "
            "queue; stopping the workers, database and Redis",
            elapsed=self.clock.seconds() - began,
            cut=_plural(ended["requests_cut"], "request"),
            aborted=_plural(ended["connections_aborted"], "connection"),
            returned=_plural(ended["jobs_returned"], "job"),
            **ended,
        )

    async def _wait_delay(self) -> None:
        self._delay_over = Deferred()
        self._delay_call = self.clock.callLater(self.delay, self._end_delay)
        await self._delay_over

    def _end_delay(self) -> None:
        over, self._delay_over = self._delay_over, None
        if over is not None:
            over.callback(None)

    @staticmethod
    def _summary(counts: Mapping[str, int]) -> str:
        parts = [
            _plural(counts.get("connections", 0), "connection") + " open",
            _plural(counts.get("requests", 0), "request") + " in flight",
            _plural(counts.get("jobs", 0), "job") + " running",
        ]
        parts += [f"{value} {key}" for key, value in counts.items()
                  if key not in _SHOWN_COUNTS and key != "idle"]
        return ", ".join(parts)

    @staticmethod
    def _call(participant: DrainParticipant, method: str, *args: object) -> Deferred[Any]:
        d: Deferred[Any] = maybeDeferred(getattr(participant, method), *args)

        def failed(failure: Failure) -> None:
            log.failure("shutdown: {method} of {name} failed", failure,
                        method=method, name=participant.name)

        return d.addErrback(failed)
