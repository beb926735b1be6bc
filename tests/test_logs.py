"""Tests for installsure.logs: formats, filtering, rotation, retention, helpers, twistd glue."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.application.service import Application
from twisted.logger import (
    ILogObserver,
    LogBeginner,
    Logger,
    LogLevel,
    LogPublisher,
    globalLogPublisher,
)
from twisted.python import usage

from installsure.logs import (
    REDACTED,
    DailyRotatingFile,
    LogFileError,
    LoggingSettings,
    build_observer,
    business_event,
    configure_logging,
    flush_logs,
    log_access,
)

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class FakeClock:
    """A settable wall clock (seconds since the epoch)."""

    def __init__(self, when: str) -> None:
        self.now = _epoch(when)

    def set(self, when: str) -> None:
        self.now = _epoch(when)

    def __call__(self) -> float:
        return self.now


def _logger(settings: LoggingSettings, stream: Any) -> Logger:
    return Logger(namespace="test.ns", observer=build_observer(settings, stream=stream))


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def captured() -> Iterator[list[dict[str, Any]]]:
    """Events published to the global publisher while the test runs."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


# ----------------------------------------------------------------------------- settings


def test_settings_defaults() -> None:
    """The documented defaults: info, text, stdout, 14 days."""
    settings = LoggingSettings()
    assert (settings.level, settings.format, settings.file, settings.retention_days) == (
        "info",
        "text",
        None,
        14,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"level": "verbose"}, "logging.level must be one of debug, info, warn, error, critical"),
        ({"format": "xml"}, "logging.format must be one of text, json"),
        ({"retention_days": 0}, "logging.retention_days must be a whole number of days >= 1"),
        ({"retention_days": True}, "logging.retention_days must be a whole number"),
        ({"file": "  "}, "logging.file must be a file path"),
    ],
)
def test_settings_reject_bad_values(kwargs: dict[str, Any], expected: str) -> None:
    """Bad settings fail with a message naming the key and what is expected."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        LoggingSettings(**kwargs)


# ----------------------------------------------------------------------------- JSON


def test_json_lines_carry_structured_fields() -> None:
    """Each event is one JSON object with time, level, namespace, message and its fields."""
    stream = io.StringIO()
    log = _logger(LoggingSettings(format="json"), stream)
    log.info("user {name} uploaded {count} files", name="ana", count=3, projectId="p-1")
    log.emit(LogLevel.warn, "second")
    first, second = _json_lines(stream.getvalue())
    assert TIME.match(first["time"])
    assert first["level"] == "info"
    assert first["namespace"] == "test.ns"
    assert first["message"] == "user ana uploaded 3 files"
    assert (first["name"], first["count"], first["projectId"]) == ("ana", 3, "p-1")
    assert not [key for key in first if key.startswith("log_")]
    assert second["level"] == "warn"


def test_json_time_is_utc_with_milliseconds() -> None:
    """``time`` is the event's own time, ISO 8601 UTC with milliseconds."""
    stream = io.StringIO()
    observer = build_observer(LoggingSettings(format="json"), stream=stream)
    observer(
        {
            "log_time": _epoch("2026-11-30T23:59:58.25"),
            "log_level": LogLevel.info,
            "log_namespace": "t",
            "log_format": "x",
        }
    )
    assert _json_lines(stream.getvalue())[0]["time"] == "2026-11-30T23:59:58.250Z"


def test_json_writes_values_json_cannot_as_text() -> None:
    """Objects, NaN, bytes and odd keys never break a line; they are repr()'d."""

    class Thing:
        def __repr__(self) -> str:
            return "<Thing 7>"

    stream = io.StringIO()
    log = _logger(LoggingSettings(format="json"), stream)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    log.info(
        "odd",
        thing=Thing(),
        ratio=float("nan"),
        raw=b"\x00\xff",
        keyed={(1, 2): "tuple key"},
        when=datetime(2026, 11, 30, tzinfo=UTC),
        cyclic=cyclic,
    )
    (line,) = _json_lines(stream.getvalue())
    assert line["thing"] == "<Thing 7>"
    assert line["ratio"] == "nan"
    assert line["raw"] == repr(b"\x00\xff")
    assert line["keyed"] == {"(1, 2)": "tuple key"}
    assert line["when"] == "2026-11-30T00:00:00+00:00"
    assert line["message"] == "odd"


def test_message_formatting_follows_twisted_logger() -> None:
    """Twisted's ``{call()}`` syntax works and a bad format never raises, it is described."""
    stream = io.StringIO()
    log = _logger(LoggingSettings(format="json"), stream)
    log.info("size {size()} of {name!r}", size=lambda: 42, name="a")
    log.info("missing {nothere}", present=1)
    first, second = _json_lines(stream.getvalue())
    assert first["message"] == "size 42 of 'a'"
    assert second["message"].startswith("Unable to format event")
    assert second["present"] == 1


def test_json_fields_clashing_with_reserved_keys_are_kept() -> None:
    """A field called ``level`` or ``message`` does not overwrite the line's own keys."""
    stream = io.StringIO()
    _logger(LoggingSettings(format="json"), stream).error("boom", message="mine", time=5)
    (line,) = _json_lines(stream.getvalue())
    assert (line["message"], line["level"]) == ("boom", "error")
    assert (line["field_message"], line["field_time"]) == ("mine", 5)


def test_json_failure_has_exception_and_traceback() -> None:
    """A failure event carries the exception and its traceback as fields, not in message."""
    stream = io.StringIO()
    log = _logger(LoggingSettings(format="json"), stream)
    try:
        raise ValueError("bad input 42")
    except ValueError:
        log.failure("processing job {job_id} failed", job_id="j1")
    (line,) = _json_lines(stream.getvalue())
    assert line["level"] == "critical"
    assert line["message"] == "processing job j1 failed"
    assert line["exception"] == "ValueError: bad input 42"
    assert "Traceback" in line["traceback"]
    assert "bad input 42" in line["traceback"]
    assert "test_json_failure_has_exception_and_traceback" in line["traceback"]


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_json_file_is_readable_with_jq(tmp_path: Path) -> None:
    """jq parses every line and can select on the structured fields."""
    sink = DailyRotatingFile(tmp_path / "installsure.log")
    log = _logger(LoggingSettings(format="json"), sink)
    log.info('multi\nline "quoted" ünïcode', n=1)
    log_failure_event(log)
    sink.close()
    result = subprocess.run(
        ["jq", "-c", "select(.n == 1) | .message", str(tmp_path / "installsure.log")],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert json.loads(result.stdout) == 'multi\nline "quoted" ünïcode'


def log_failure_event(log: Logger) -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("division")


# ----------------------------------------------------------------------------- text


def test_text_line_appends_unreferenced_fields() -> None:
    """Text lines read like twistd's, with fields not in the message appended as k=v."""
    stream = io.StringIO()
    log = _logger(LoggingSettings(), stream)
    log.info("job {job_id} done", job_id="j7", queue="files", note="two words", n=None)
    line = stream.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[test\.ns#info\] job j7 done "
        r'queue=files note="two words" n=None\n',
        line,
    ), line
    assert "job_id=" not in line


def test_text_failure_traceback_is_indented() -> None:
    """A failure's traceback follows its line, each continuation line indented by a tab."""
    stream = io.StringIO()
    log_failure_event(_logger(LoggingSettings(), stream))
    first, *rest = stream.getvalue().rstrip("\n").split("\n")
    assert first.endswith("[test.ns#critical] division")
    assert rest
    assert all(line.startswith("\t") for line in rest)
    assert "ZeroDivisionError" in rest[-1]


def test_level_filter_drops_events_below_the_setting() -> None:
    """With level=warn, debug and info are dropped; warn, error and critical pass."""
    stream = io.StringIO()
    log = _logger(LoggingSettings(level="warn", format="json"), stream)
    log.debug("d")
    log.info("i")
    log.emit(LogLevel.warn, "w")
    log.error("e")
    log.critical("c")
    assert [line["message"] for line in _json_lines(stream.getvalue())] == ["w", "e", "c"]


# ----------------------------------------------------------------------------- redaction


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_are_redacted_in_both_formats(log_format: str) -> None:
    """Secret-named fields, also nested and named in the message, never reach the output."""
    stream = io.StringIO()
    log = _logger(LoggingSettings(format=log_format), stream)
    log.info(
        "login with {password}",
        password="hunter2-secret-value",
        accessToken="tok-value-1",
        jwt_secret="s3cr3t-value",
        headers={"Authorization": "Bearer abc-value", "Accept": "json"},
        user="ana",
    )
    output = stream.getvalue()
    for secret in ("hunter2-secret-value", "tok-value-1", "s3cr3t-value", "abc-value"):
        assert secret not in output
    assert REDACTED in output
    assert "ana" in output
    if log_format == "json":
        (line,) = _json_lines(output)
        assert line["message"] == f"login with {REDACTED}"
        assert line["headers"] == {"Authorization": REDACTED, "Accept": "json"}
        assert line["accessToken"] == REDACTED


# ----------------------------------------------------------------------------- writing


def test_full_disk_on_stream_never_raises_and_is_reported_once(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Writing to a full device drops lines, does not raise, and says so once on stderr."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    full = Path("/dev/full").open("w")  # noqa: SIM115
    log = _logger(LoggingSettings(), full)
    log.info("first")
    log.info("second")
    flush_logs()  # info lines are flushed in the background; do it now
    log.warn("third")  # warnings are flushed at once
    with contextlib.suppress(OSError):  # the unflushable buffer fails again on close
        full.close()
    err = capfd.readouterr().err
    assert err.count("cannot write log output") == 1
    assert "No space left on device" in err


def test_unopenable_log_file_at_start_is_a_clear_error(tmp_path: Path) -> None:
    """A log path that cannot be opened at start fails at once, naming the path and key."""
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(LogFileError, match=r"cannot open log file .*not-a-dir.*logging\.file"):
        DailyRotatingFile(tmp_path / "not-a-dir" / "installsure.log")


def test_log_directory_lost_while_running_never_raises(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """If the directory vanishes, rotation and writes drop lines without raising; said once."""
    directory = tmp_path / "logs"
    clock = FakeClock("2026-11-30T23:59:00")
    sink = DailyRotatingFile(directory / "installsure.log", clock=clock)
    log = _logger(LoggingSettings(), sink)
    log.info("kept")
    shutil.rmtree(directory)
    directory.write_text("now a file")
    clock.set("2026-12-01T00:00:01")
    log.info("dropped 1")
    clock.set("2026-12-01T00:00:03")
    log.info("dropped 2")
    err = capfd.readouterr().err
    assert err.count("cannot open log file") == 1
    assert str(directory) in err


def test_lines_from_many_threads_stay_whole(tmp_path: Path) -> None:
    """Events logged from thread-pool threads at once come out as whole, parseable lines."""
    sink = DailyRotatingFile(tmp_path / "installsure.log")
    log = _logger(LoggingSettings(format="json"), sink)

    def work(worker: int) -> None:
        for n in range(200):
            log.info("worker {worker} line {n}", worker=worker, n=n, pad="x" * 500)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    sink.close()
    lines = _json_lines((tmp_path / "installsure.log").read_text())
    assert len(lines) == 800
    assert {(line["worker"], line["n"]) for line in lines} == {
        (worker, n) for worker in range(4) for n in range(200)
    }


def test_reopen_follows_an_outside_rotation(tmp_path: Path) -> None:
    """After logrotate moves the file, reopen() starts a fresh file at the same path."""
    path = tmp_path / "installsure.log"
    sink = DailyRotatingFile(path)
    sink.write("one\n")
    path.rename(tmp_path / "moved.log")
    sink.reopen()
    sink.write("two\n")
    sink.close()
    assert (tmp_path / "moved.log").read_text() == "one\n"
    assert path.read_text() == "two\n"


def test_day_without_lines_leaves_no_rotated_file(tmp_path: Path) -> None:
    """A day on which nothing was logged does not produce an empty rotated file."""
    clock = FakeClock("2026-11-30T12:00:00")
    sink = DailyRotatingFile(tmp_path / "installsure.log", clock=clock)
    clock.set("2026-12-01T00:00:01")
    sink.write("first line of the 1st\n")
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["installsure.log"]


def test_log_file_directory_is_created(tmp_path: Path) -> None:
    """A missing log directory is created, so ./data/logs/x.log just works."""
    sink = DailyRotatingFile(tmp_path / "data" / "logs" / "installsure.log")
    sink.write("hello\n")
    sink.close()
    assert (tmp_path / "data" / "logs" / "installsure.log").read_text() == "hello\n"


# ----------------------------------------------------------------------------- rotation


def test_rotation_at_utc_midnight(tmp_path: Path) -> None:
    """The first line after UTC midnight moves the file aside as installsure.log.<day>."""
    clock = FakeClock("2026-11-30T23:59:59")
    path = tmp_path / "installsure.log"
    sink = DailyRotatingFile(path, clock=clock)
    sink.write("before midnight\n")
    clock.set("2026-11-30T23:59:59.999")
    sink.write("still the 30th\n")
    clock.set("2026-12-01T00:00:01")
    sink.write("after midnight\n")
    sink.close()
    assert (tmp_path / "installsure.log.2026-11-30").read_text() == (
        "before midnight\nstill the 30th\n"
    )
    assert path.read_text() == "after midnight\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "installsure.log",
        "installsure.log.2026-11-30",
    ]


def test_rotation_after_days_without_lines_names_the_last_written_day(tmp_path: Path) -> None:
    """A quiet weekend: the file is named after the day it was written, not the day before."""
    clock = FakeClock("2026-11-27T12:00:00")
    sink = DailyRotatingFile(tmp_path / "installsure.log", clock=clock)
    sink.write("friday\n")
    clock.set("2026-11-30T08:00:00")
    sink.write("monday\n")
    sink.close()
    assert (tmp_path / "installsure.log.2026-11-27").read_text() == "friday\n"
    assert (tmp_path / "installsure.log").read_text() == "monday\n"


def test_stale_file_from_earlier_day_is_rotated_at_start(tmp_path: Path) -> None:
    """A file last written yesterday (by an earlier run) becomes yesterday's file at start."""
    path = tmp_path / "installsure.log"
    path.write_text("old run\n")
    yesterday = _epoch("2026-11-29T22:00:00")
    os.utime(path, (yesterday, yesterday))
    (tmp_path / "installsure.log.2026-11-29").write_text("already there\n")
    sink = DailyRotatingFile(path, clock=FakeClock("2026-11-30T01:00:00"))
    sink.write("new run\n")
    sink.close()
    assert (tmp_path / "installsure.log.2026-11-29").read_text() == "already there\n"
    assert (tmp_path / "installsure.log.2026-11-29.1").read_text() == "old run\n"
    assert path.read_text() == "new run\n"


def test_same_day_restart_appends(tmp_path: Path) -> None:
    """Restarting on the same day keeps appending to the current file."""
    clock = FakeClock("2026-11-30T10:00:00")
    path = tmp_path / "installsure.log"
    first = DailyRotatingFile(path, clock=clock)
    first.write("one\n")
    first.close()
    os.utime(path, (clock.now, clock.now))
    second = DailyRotatingFile(path, clock=clock)
    second.write("two\n")
    second.close()
    assert path.read_text() == "one\ntwo\n"


def test_retention_at_start_deletes_old_rotated_files_only(tmp_path: Path) -> None:
    """At start, rotated files older than retention_days go; recent and unrelated stay."""
    names = [
        "installsure.log.2026-11-01",
        "installsure.log.2026-11-15",
        "installsure.log.2026-11-15.1",
        "installsure.log.2026-11-16",
        "installsure.log.2026-11-29",
        "installsure.log.bak",
        "other.log.2026-01-01",
        "installsure.log.2026-13-45",
    ]
    for name in names:
        (tmp_path / name).write_text(name)
    sink = DailyRotatingFile(
        tmp_path / "installsure.log", retention_days=14, clock=FakeClock("2026-11-30T09:00:00")
    )
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "installsure.log",
        "installsure.log.2026-11-16",
        "installsure.log.2026-11-29",
        "installsure.log.2026-13-45",
        "installsure.log.bak",
        "other.log.2026-01-01",
    ]


def test_retention_applies_at_each_rotation(tmp_path: Path) -> None:
    """When the day changes, a file that just became too old is deleted."""
    (tmp_path / "installsure.log.2026-11-28").write_text("old")
    (tmp_path / "installsure.log.2026-11-29").write_text("kept")
    clock = FakeClock("2026-11-30T23:00:00")
    sink = DailyRotatingFile(tmp_path / "installsure.log", retention_days=2, clock=clock)
    assert (tmp_path / "installsure.log.2026-11-28").exists()
    sink.write("30th\n")
    clock.set("2026-12-01T00:00:05")
    sink.write("1st\n")
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "installsure.log",
        "installsure.log.2026-11-29",
        "installsure.log.2026-11-30",
    ]


# ----------------------------------------------------------------------------- helpers


def test_log_access_emits_one_access_event(captured: list[dict[str, Any]]) -> None:
    """log_access: namespace installsure.access, info, camelCase fields, short message."""
    log_access(
        method="GET",
        path="/api/projects?page=2&access_token=abc123",
        route="/api/projects",
        status=200,
        duration_ms=12.3456,
        bytes_sent=512,
        request_id="req-1",
        remote="10.0.0.7",
        user="u-9",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )
    (event,) = [e for e in captured if e.get("log_namespace") == "installsure.access"]
    assert event["log_level"] is LogLevel.info
    fields = {k: v for k, v in event.items() if not k.startswith("log_")}
    assert fields == {
        "method": "GET",
        "path": f"/api/projects?page=2&access_token={REDACTED}",
        "route": "/api/projects",
        "status": 200,
        "durationMs": 12.35,
        "bytes": 512,
        "requestId": "req-1",
        "remote": "10.0.0.7",
        "user": "u-9",
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    stream = io.StringIO()
    build_observer(LoggingSettings(), stream=stream)(event)
    assert f"GET /api/projects?page=2&access_token={REDACTED} 200 12.35ms route=" in (
        stream.getvalue()
    )


def test_log_access_leaves_out_unknown_user_and_trace(captured: list[dict[str, Any]]) -> None:
    """Anonymous requests without a traceparent have no user/traceId fields at all."""
    log_access(
        method="POST",
        path="/api/auth/login",
        route="/api/auth/login",
        status=401,
        duration_ms=3,
        bytes_sent=80,
        request_id="r",
        remote="::1",
    )
    (event,) = [e for e in captured if e.get("log_namespace") == "installsure.access"]
    assert "user" not in event
    assert "traceId" not in event
    assert event["durationMs"] == 3


def test_slow_request_adds_a_warning(captured: list[dict[str, Any]]) -> None:
    """A request over slow_threshold_ms: the info line and a warn event with the
    threshold; one under it gets only the info line."""
    log_access(
        slow_threshold_ms=500,
        method="GET",
        path="/fast",
        route="/fast",
        status=200,
        duration_ms=499.0,
        bytes_sent=10,
        request_id="r1",
        remote="127.0.0.1",
    )
    assert [e["log_level"] for e in captured
            if e.get("log_namespace") == "installsure.access"] == [LogLevel.info]
    captured.clear()
    log_access(
        slow_threshold_ms=500,
        method="GET",
        path="/api/files",
        route="/api/files",
        status=200,
        duration_ms=812.0,
        bytes_sent=10,
        request_id="r2",
        remote="127.0.0.1",
    )
    info, event = [e for e in captured if e.get("log_namespace") == "installsure.access"]
    assert info["log_level"] is LogLevel.info
    assert "thresholdMs" not in info
    assert event["log_level"] is LogLevel.warn
    assert event["thresholdMs"] == 500
    stream = io.StringIO()
    build_observer(LoggingSettings(level="warn", format="json"), stream=stream)(event)
    assert _json_lines(stream.getvalue())[0]["message"] == (
        "slow request: GET /api/files 200 took 812.0ms (over 500ms)"
    )


def test_business_event(captured: list[dict[str, Any]]) -> None:
    """business_event: namespace installsure.events, info, event=name, any field names."""
    business_event("project.created", projectId="p1", level="gold", format="ifc", name="x")
    (event,) = [e for e in captured if e.get("log_namespace") == "installsure.events"]
    assert event["log_level"] is LogLevel.info
    assert (event["event"], event["projectId"], event["level"]) == ("project.created", "p1", "gold")
    stream = io.StringIO()
    build_observer(LoggingSettings(format="json"), stream=stream)(event)
    (line,) = _json_lines(stream.getvalue())
    assert (line["message"], line["event"], line["field_level"], line["format"]) == (
        "project.created",
        "project.created",
        "gold",
        "ifc",
    )


def test_business_event_rejects_reserved_field_names() -> None:
    """Fields named event or log_* would corrupt the event; the caller is told clearly."""
    with pytest.raises(TypeError, match="may not be named event, log_level"):
        business_event("x", event="y", log_level="z")


# ----------------------------------------------------------------------------- twistd glue


def _plugin_options(parent: Any) -> usage.Options:
    options = usage.Options()
    options.parent = parent
    return options


def _server_options(**values: Any) -> Any:
    from twisted.scripts.twistd import ServerOptions

    server = ServerOptions()
    server.update(values)
    return server


def test_twistd_logfile_gets_our_format_through_app_logger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """twistd --logfile X: AppLogger picks our observer from the application and X is JSON."""
    import twisted.logger
    from twisted.scripts._twistd_unix import UnixAppLogger

    logfile = tmp_path / "twistd.log"
    server = _server_options(nodaemon=False, logfile=str(logfile))
    root = configure_logging(LoggingSettings(format="json"), _plugin_options(server))
    application = Application("installsure")
    root.setServiceParent(application)
    assert application.getComponent(ILogObserver) is root.observer

    # A private beginner, so the real twistd code path runs without taking over this
    # test process's stdio, warnings and global log.
    publisher = LogPublisher()
    beginner = LogBeginner(
        publisher,
        io.StringIO(),
        SimpleNamespace(stdout=io.StringIO(), stderr=io.StringIO()),
        SimpleNamespace(showwarning=warnings.showwarning),
    )
    monkeypatch.setattr(twisted.logger, "globalLogBeginner", beginner)
    UnixAppLogger(server).start(application)
    Logger(namespace="installsure.test", observer=publisher).info("ready on {port}", port=8000)
    flush_logs()
    (line,) = _json_lines(logfile.read_text())
    assert (line["message"], line["port"], line["namespace"]) == (
        "ready on 8000",
        8000,
        "installsure.test",
    )


def test_twistd_nodaemon_without_logfile_logs_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """twistd -n with no --logfile and no logging.file: our observer writes to stdout."""
    root = configure_logging(
        LoggingSettings(format="json"), _plugin_options(_server_options(nodaemon=True))
    )
    assert root.observer is not None
    Logger(namespace="t", observer=root.observer).info("to stdout")
    flush_logs()
    assert _json_lines(capsys.readouterr().out)[0]["message"] == "to stdout"


def test_twistd_logfile_option_beats_config_file(tmp_path: Path) -> None:
    """--logfile on the command line wins over logging.file, as command lines do."""
    settings = LoggingSettings(file=str(tmp_path / "config.log"))
    server = _server_options(nodaemon=True, logfile=str(tmp_path / "cli.log"))
    root = configure_logging(settings, _plugin_options(server))
    assert root.observer is not None
    Logger(namespace="t", observer=root.observer).info("where")
    flush_logs()
    assert "where" in (tmp_path / "cli.log").read_text()
    assert not (tmp_path / "config.log").exists()


def test_config_file_used_when_no_logfile_option(tmp_path: Path) -> None:
    """twistd -n with logging.file set: the configured, rotated file gets the lines."""
    settings = LoggingSettings(file=str(tmp_path / "logs" / "installsure.log"))
    root = configure_logging(settings, _plugin_options(_server_options(nodaemon=True)))
    assert root.observer is not None
    Logger(namespace="t", observer=root.observer).info("configured")
    flush_logs()
    assert "configured" in (tmp_path / "logs" / "installsure.log").read_text()


@pytest.mark.parametrize("choice", [{"syslog": True}, {"logger": lambda: None}])
def test_twistd_own_logger_choices_are_respected(choice: dict[str, Any]) -> None:
    """--syslog or --logger: the operator chose twistd's observer; we hand over none."""
    root = configure_logging(
        LoggingSettings(), _plugin_options(_server_options(nodaemon=True, **choice))
    )
    application = Application("installsure")
    root.setServiceParent(application)
    assert root.observer is None
    assert application.getComponent(ILogObserver, None) is None


def test_without_runner_nothing_is_handed_over() -> None:
    """Called outside twistd/twist (no parent options), the root carries no observer."""
    root = configure_logging(LoggingSettings(), usage.Options())
    assert root.observer is None


def test_twist_gets_our_observer_factory() -> None:
    """Under twist, its fileLogObserverFactory is replaced by one writing our format."""
    from twisted.application.twist._options import TwistOptions

    twist = TwistOptions()
    twist["fileLogObserverFactory"] = None
    configure_logging(LoggingSettings(format="json"), _plugin_options(twist))
    stream = io.StringIO()
    observer = twist["fileLogObserverFactory"](stream)
    Logger(namespace="t", observer=observer).info("via twist", n=2)
    flush_logs()
    (line,) = _json_lines(stream.getvalue())
    assert (line["message"], line["n"]) == ("via twist", 2)


def test_info_lines_reach_the_file_within_a_fraction_of_a_second(tmp_path: Path) -> None:
    """Info lines are buffered but flushed in the background; warnings are written at once."""
    sink = DailyRotatingFile(tmp_path / "installsure.log")
    log = _logger(LoggingSettings(), sink)
    log.warn("urgent")
    assert "urgent" in (tmp_path / "installsure.log").read_text()
    log.info("routine")
    deadline = time.monotonic() + 2.0
    while "routine" not in (tmp_path / "installsure.log").read_text():
        assert time.monotonic() < deadline, "the background flush never came"
        time.sleep(0.02)
    sink.close()


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "GET", "path": "/livez", "route": "/livez", "status": 200,
         "durationMs": 0.31, "bytes": 18, "requestId": "abc-1", "remote": "127.0.0.1"},
        {"method": "GET", "path": "/a b", "status": 404, "route": None, "ok": True,
         "note": "has \"quotes\" and = signs", "empty": ""},
        {"method": "POST", "path": "/x", "status": 500, "nested": {"password": "p"}},
        {"method": "GET", "path": "/x", "status": 200, "token": "secret-value"},
        {"method": "GET", "path": "/multi\nline", "status": 200},
        {"method": "GET", "status": 200},  # the format names a missing field
        {"method": "GET", "path": "/", "status": 200, "tab": "a\tb", "accent": "café",
         "ratio": 0.5, "flag": False, "none": None, "big": 10**20},
        {"method": "GET", "path": "/", "status": 200, "items": [1, 2], "when": object()},
        {"method": "GET", "path": "/", "status": 200, "ratio": 0.5, "flag": True,
         "none": None, "count": 3, "id": "x-1", "neg": -2.5e-7},
        {"method": "GET", "path": "/", "status": 200, "blank": "", "id": "x-1"},
        # A mapping in the message itself: its secret is redacted there too.
        {"method": {"password": "p", "k": [1]}, "path": "/", "status": 200},
    ],
)
def test_fast_text_path_matches_the_general_one(fields: dict[str, Any]) -> None:
    """The shortcut for plain events renders exactly what the general renderer does
    (or steps aside): redaction, quoting, missing fields and newlines included."""
    from installsure.logs.render import _general_text, event_as_text

    event = {
        **fields,
        "log_level": LogLevel.info,
        "log_namespace": "installsure.access",
        "log_format": "{method} {path} {status}",
        "log_time": 1796014047.295,
        "log_source": None,
    }
    assert event_as_text(dict(event)) == _general_text(dict(event))


_RANDOM_KEYS = ["method", "path", "status", "route", "user", "id", "note", "ratio", "flag",
                "password", "token", "apiSecret", "authorization", "isError", "system",
                "log_system", "format", "count", "_private", "ünï", "a b", "x=y"]
_RANDOM_VALUES: list[Any] = [
    "GET", "/livez", "", " ", "a b", 'say "hi"', "x=y", "line\nbreak", "tab\there",
    "café", "\x00", "\u2028", "-", "None", 0, -1, 10**20, 0.5, -2.5e-7, float("inf"),
    float("nan"), True, False, None, [1, "a"], {"password": "p", "k": [1]}, b"bytes",
    ("t", 1), object(),
]
_RANDOM_FORMATS = ["{method} {path} {status}", "{method}", "", "plain text", "{missing}",
                   "{status:>5}", "{{literal}}", "{note!r}", "{0}", "{method} {path}"]


def test_fast_text_path_matches_the_general_one_for_random_events() -> None:
    """Five thousand generated events (odd keys, secret-looking names, values of every
    kind, formats with conversions, missing fields and braces): the shortcut renders
    exactly what the general renderer does, or steps aside. Seeded, so a failure
    reproduces."""
    from installsure.logs.render import _general_text, event_as_text

    rng = random.Random(1130)
    for case in range(5000):
        event: dict[str, Any] = {
            key: rng.choice(_RANDOM_VALUES)
            for key in rng.sample(_RANDOM_KEYS, rng.randrange(0, 8))
        }
        event.update(
            log_level=rng.choice([LogLevel.info, LogLevel.warn, LogLevel.debug]),
            log_namespace=rng.choice(["installsure.access", "x", ""]),
            log_format=rng.choice(_RANDOM_FORMATS),
            log_time=rng.choice([1796014047.295, 1796014047.0]),
            log_source=None,
        )
        assert event_as_text(dict(event)) == _general_text(dict(event)), (case, event)


def test_batched_observer_keeps_order_and_writes_urgent_lines_at_once() -> None:
    """Routine lines are written in batches; a warning writes the waiting lines and
    itself at once, in order; the rest arrives with the background flush."""
    from installsure.logs.sinks import LineObserver

    writes: list[str] = []
    flushes: list[int] = []

    class Sink:
        def write(self, text: str) -> None:
            writes.append(text)

        def flush(self) -> None:
            flushes.append(len(writes))

    observer = LineObserver(lambda e: e["log_format"], Sink(), batch_size=3)
    log = Logger(namespace="t", observer=observer)
    log.info("one")
    log.info("two")
    assert writes == []
    log.info("three")
    assert writes == ["one\ntwo\nthree\n"]
    log.info("four")
    log.warn("five")
    assert writes[1:] == ["four\nfive\n"]
    assert flushes == [2]
    log.info("six")
    flush_logs()
    assert writes[2:] == ["six\n"]


FLUSHER_CHILD = """
import os, sys, time
from twisted.logger import Logger
from installsure.logs import DailyRotatingFile, LoggingSettings, build_observer
from installsure.logs.sinks import hold_background_flush, release_background_flush

path = sys.argv[1]
observer = build_observer(LoggingSettings(), stream=DailyRotatingFile(path), batch_size=64)
log = Logger(observer=observer)
if sys.argv[2] == "held":
    hold_background_flush()
log.info("before the fork")
if sys.argv[2] == "held":
    time.sleep(0.5)
    assert "before the fork" not in open(path).read(), "held back until released"
if os.fork() == 0:
    if sys.argv[2] == "held":
        release_background_flush()
    log.info("in the child")
    time.sleep(1.0)
    os.kill(os.getpid(), 9)  # as a crash would: no exit handler flushes
os.wait()
os._exit(0)  # the parent's buffered copy of the lines must not be written twice
"""


@pytest.mark.parametrize("mode", ["running", "held"])
def test_routine_lines_are_flushed_in_a_forked_child(tmp_path: Path, mode: str) -> None:
    """A child forked by a daemonizing runner writes its routine lines within the flush
    interval, whether the flusher thread ran before the fork (started again in the
    child) or was held back until the child released it; nothing is written twice."""
    path = tmp_path / "installsure.log"
    subprocess.run(
        [sys.executable, "-c", FLUSHER_CHILD, str(path), mode], check=True, timeout=60,
        env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    lines = path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "[__main__#info] before the fork", "[__main__#info] in the child"], lines
