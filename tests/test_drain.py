"""The drain service's phases (installsure.drain) and the second stop signal
(installsure.process.StopSignals), on a clock the tests move."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import REGISTRY
from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater

from installsure.drain import DrainParticipant, DrainService, Phase
from installsure.process import StopSignals
from tests.http.helpers import captured_events


def phase_metric() -> float | None:
    """installsure_shutdown_phase as /metrics shows it."""
    return REGISTRY.get_sample_value("installsure_shutdown_phase")


class Recorder(DrainParticipant):
    """Notes each call with the drain's phase and the clock's time; finishes when told."""

    name = "recorder"

    def __init__(self, service: list[DrainService], clock: Clock, **counts: int) -> None:
        self.service = service
        self.clock = clock
        self._counts = counts
        self.calls: list[tuple[str, Phase, float]] = []
        self.finished: defer.Deferred[Mapping[str, int]] = defer.Deferred()
        self.deadline: float | None = None

    def _note(self, what: str) -> None:
        self.calls.append((what, self.service[0].phase, self.clock.seconds()))

    def counts(self) -> Mapping[str, int]:
        return self._counts

    def stop_accepting(self) -> None:
        self._note("stop_accepting")

    def drain_connections(self) -> None:
        self._note("drain_connections")

    def finish(self, deadline: float) -> defer.Deferred[Mapping[str, int]]:
        self._note("finish")
        self.deadline = deadline
        return self.finished


def drain_with(clock: Clock, **kw: Any) -> tuple[DrainService, Recorder]:
    holder: list[DrainService] = []
    service = DrainService(reactor=clock, **kw)
    holder.append(service)
    recorder = Recorder(holder, clock, connections=3, requests=2, jobs=1, idle=1)
    service.add(recorder)
    service.startService()
    return service, recorder


def formats(events: list[Any]) -> list[str]:
    return [e["log_format"] for e in events if str(e["log_format"]).startswith("shutdown")]


def test_phases_run_in_order_and_each_is_logged_with_its_counts() -> None:
    """Stopping: /readyz turns 503 at once (is_draining) and nothing else happens for
    the delay; then listeners stop accepting and connections drain in the same turn;
    then work finishes until SIGTERM + grace. One line per phase, with the counts,
    and the phase in /metrics throughout."""
    clock = Clock()
    with captured_events("") as events:
        service, recorder = drain_with(clock, grace=10.0, delay=2.0)
        assert phase_metric() == Phase.SERVING
        stopping = service.stopService()
        assert service.is_draining()
        assert service.phase is Phase.ANNOUNCING
        assert phase_metric() == Phase.ANNOUNCING
        assert recorder.calls == []
        clock.advance(1.9)
        assert recorder.calls == []
        clock.advance(0.1)
        assert recorder.calls == [
            ("stop_accepting", Phase.CLOSING_LISTENERS, 2.0),
            ("drain_connections", Phase.CLOSING_LISTENERS, 2.0),
            ("finish", Phase.FINISHING_WORK, 2.0),
        ]
        assert recorder.deadline == 10.0, "the grace counts from the stop, delay included"
        assert phase_metric() == Phase.FINISHING_WORK
        assert not stopping.called
        clock.advance(3)
        recorder.finished.callback({"requests_cut": 1, "jobs_returned": 4})
        assert stopping.called
    assert service.phase is Phase.STOPPING_SERVICES
    lines = formats(events)
    assert [line.split(",")[0] for line in lines[:4]] == [
        "shutdown 1/4", "shutdown 2/4", "shutdown 3/4", "shutdown 4/4"]
    assert lines[4].startswith("shutdown: work finished")
    assert len(lines) == 5
    first = next(e for e in events if str(e["log_format"]).startswith("shutdown 1/4"))
    counted = (first["connections"], first["requests"], first["jobs"], first["delay"])
    assert counted == (3, 2, 1, 2.0)
    assert "3 connections open, 2 requests in flight, 1 job running" in first["summary"]
    last = next(e for e in events if "work finished" in str(e["log_format"]))
    assert (last["requests_cut"], last["jobs_returned"], last["elapsed"]) == (1, 4, 5.0)
    assert last["cut"] == "1 request"
    assert last["returned"] == "4 jobs"


def test_a_second_stop_signal_ends_the_delay() -> None:
    """on_begin receives the drain's skip_delay when the drain begins; calling it (as a
    second SIGTERM or SIGINT does) moves on to closing the listeners at once; calling
    it again later changes nothing."""
    clock = Clock()
    given: list[Any] = []
    service, recorder = drain_with(clock, grace=30.0, delay=20.0, on_begin=given.append)
    service.stopService()
    assert given == [service.skip_delay]
    clock.advance(1)
    assert recorder.calls == []
    given[0](signal.SIGTERM)
    assert [call[0] for call in recorder.calls] == [
        "stop_accepting", "drain_connections", "finish"]
    assert recorder.deadline == 30.0
    given[0](signal.SIGINT)
    assert len(recorder.calls) == 3


def test_without_a_delay_the_listeners_close_at_once() -> None:
    """delay 0 (development, test, and every worker): nothing waits before phase 2."""
    clock = Clock()
    service, recorder = drain_with(clock, grace=5.0)
    service.stopService()
    assert [call[0] for call in recorder.calls] == [
        "stop_accepting", "drain_connections", "finish"]


def test_a_stop_on_a_fatal_error_skips_the_delay() -> None:
    """A process stopping on an error (the database's schema is unusable, a port is
    taken) has no traffic to announce its stop to: phase 2 follows at once, with a
    line that says why, instead of keeping the operator waiting for the exit status."""
    clock = Clock()
    with captured_events("") as events:
        service, recorder = drain_with(clock, grace=30.0, delay=5.0, failing=lambda: True)
        service.stopService()
    assert [call[:2] for call in recorder.calls] == [
        ("stop_accepting", Phase.CLOSING_LISTENERS),
        ("drain_connections", Phase.CLOSING_LISTENERS),
        ("finish", Phase.FINISHING_WORK),
    ]
    assert recorder.calls[0][2] == 0.0
    assert "stopping on an error" in formats(events)[0]


def test_a_failing_participant_is_logged_and_the_drain_goes_on() -> None:
    """A participant whose phase raises is logged with its name and method; the other
    participants go through every phase and the drain ends."""
    clock = Clock()
    service, recorder = drain_with(clock, grace=5.0)

    class Broken(DrainParticipant):
        name = "broken"

        def stop_accepting(self) -> None:
            raise RuntimeError("no")

        def finish(self, deadline: float) -> None:
            raise RuntimeError("no again")

    service.add(Broken())
    with captured_events("") as events:
        stopping = service.stopService()
        recorder.finished.callback({})
    assert stopping.called
    failed = [(e["method"], e["name"]) for e in events
              if e["log_format"] == "shutdown: {method} of {name} failed"]
    assert failed == [("stop_accepting", "broken"), ("finish", "broken")]
    assert [call[0] for call in recorder.calls] == [
        "stop_accepting", "drain_connections", "finish"]


def test_a_plain_hook_runs_in_phase_four_with_the_grace_left() -> None:
    """add_hook(name, hook) runs hook(seconds of grace left) beside the other work."""
    clock = Clock()
    seen: list[tuple[Phase, float]] = []
    holder: list[DrainService] = []
    service = DrainService(grace=7.0, delay=2.0, reactor=clock)
    holder.append(service)
    service.add_hook("hook", lambda left: seen.append((holder[0].phase, left)))
    service.startService()
    stopping = service.stopService()
    clock.advance(2)
    assert seen == [(Phase.FINISHING_WORK, 5.0)]
    assert stopping.called


@pytest.fixture
def stop_signals() -> Any:
    """StopSignals on the running reactor; never leaves its handlers behind."""
    signals = StopSignals(reactor)
    yield signals
    signals.release()


@pytest_twisted.ensureDeferred
async def test_stop_signals_take_over_the_reactors_handlers_and_give_them_back(
    stop_signals: StopSignals,
) -> None:
    """Installed, StopSignals replaces the reactor's SIGTERM handler; once the process
    is stopping (catch), a SIGTERM reaches on_repeat on the reactor thread instead of
    stopping the reactor again; release puts the reactor's own handler back."""
    if signal.getsignal(signal.SIGTERM) != reactor.sigTerm:  # type: ignore[attr-defined]
        pytest.skip("the reactor runs without its signal handlers here")
    stop_signals.install()
    assert signal.getsignal(signal.SIGTERM) == stop_signals._received
    received: list[int] = []
    stop_signals.catch(received.append)
    os.kill(os.getpid(), signal.SIGTERM)
    while not received:
        await deferLater(reactor, 0.01, lambda: None)
    assert received == [signal.SIGTERM]
    stop_signals.release()
    assert signal.getsignal(signal.SIGTERM) == reactor.sigTerm  # type: ignore[attr-defined]


class QueuedReactor:
    """Queues callFromThread calls until run_queued and notes stop(); stands in for the
    reactor so that a first signal can be tried without stopping the test's own."""

    def __init__(self) -> None:
        self.stops = 0
        self.queued: list[Any] = []

    def callFromThread(self, fn: Any, *args: Any) -> None:
        self.queued.append((fn, args))

    def run_queued(self) -> None:
        while self.queued:
            fn, args = self.queued.pop(0)
            fn(*args)

    def stop(self) -> None:
        self.stops += 1


def test_a_stop_signal_logs_nothing_in_the_handler_and_stops_once() -> None:
    """The handler itself only queues work for the reactor thread (logging there could
    deadlock on a log lock the interrupted code holds); on that thread the first signal
    stops the reactor and logs, a second one goes to the drain."""
    fake = QueuedReactor()
    signals = StopSignals(fake)
    repeats: list[int] = []
    with captured_events("") as events:
        signals._received(signal.SIGTERM, None)
        assert events == []
        assert fake.stops == 0
        fake.run_queued()
        assert fake.stops == 1
        signals.catch(repeats.append)  # as the drain does when it begins
        signals._received(signal.SIGINT, None)
        fake.run_queued()
    assert fake.stops == 1
    assert repeats == [signal.SIGINT]
    assert [(e["log_format"], e["signal"]) for e in events] == [
        ("received {signal}, stopping", "SIGTERM"),
        ("received {signal} while stopping", "SIGINT"),
    ]


def test_stop_signals_leave_a_handler_that_is_not_the_reactors_alone(
    stop_signals: StopSignals,
) -> None:
    """A SIGTERM handler someone else installed (not the reactor's) stays in place."""

    def theirs(_number: int, _frame: object) -> None:
        """Someone else's handler."""

    previous = signal.signal(signal.SIGTERM, theirs)
    try:
        stop_signals.install()
        assert signal.getsignal(signal.SIGTERM) is theirs
        stop_signals.release()
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, previous)
