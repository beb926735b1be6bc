"""Log observers (text, JSON lines, daily rotation with retention) and log helpers.

Everything in InstallSure logs through ``twisted.logger`` with structured fields. This
module decides how those events leave the process:

* ``build_observer(settings, stream=...)`` renders events as classic-looking text lines
  with the unreferenced structured fields appended, or as JSON lines (one object per
  line: ``time``, ``level``, ``namespace``, ``message`` and every field), filtered by
  ``logging.level``. Fields named like a secret are written as ``[redacted]``.
* ``DailyRotatingFile`` is the file behind ``logging.file``: it rotates at UTC midnight
  (``installsure.log`` → ``installsure.log.2026-11-30``), deletes rotated files older than
  ``logging.retention_days`` at start and at each rotation, and never raises into the
  code that logged (a full disk is reported once on the real stderr).
* ``log_access``, ``log_slow_request`` and ``business_event`` emit the events other parts
  share; they are on every request's path, so each is one dict and one observer call.

How the observer reaches twistd
-------------------------------
twistd builds the service (``makeService``) *before* it starts logging, and
``AppLogger.start`` uses, in this order: the ``--logger`` factory, an ``ILogObserver``
component of the application, then its own text observer for ``--logfile``/stdout. The
application object is created by twistd, but our root service is attached to it with
``root.setServiceParent(application)``. So ``configure_logging`` returns the root
``MultiService`` (``LoggingRootService``) and, when twistd adopts it, it sets our observer
as the application's ``ILogObserver`` component. That works with both ``twistd -n
installsure`` (stdout) and ``twistd --logfile X installsure`` (X, in our format, rotated
daily): the command line's ``--logfile`` wins over ``logging.file`` as command lines do.
``--logger`` and ``--syslog`` keep their twistd meaning (we hand over nothing then).

A ``--logger=installsure.logs.…`` factory was considered and rejected: twistd calls it
without arguments, so it could only find our settings through global state, and every
operator would have to remember the flag.

``twist installsure`` starts logging after ``makeService`` too, but ignores application
components; instead it reads ``fileLogObserverFactory`` from its options, so
``configure_logging`` replaces that factory with ours (twist's own ``--log-level`` still
filters in addition to ``logging.level``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import string
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from attrs import field, frozen
from twisted.application.service import IServiceCollection, MultiService
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LoggingFile,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.reflect import qual
from zope.interface import implementer

__all__ = [
    "FORMATS",
    "LEVELS",
    "REDACTED",
    "DailyRotatingFile",
    "LoggingRootService",
    "LoggingSettings",
    "build_observer",
    "business_event",
    "configure_logging",
    "event_as_json",
    "event_as_text",
    "log_access",
    "log_slow_request",
    "start_logging",
]

LEVELS = ("debug", "info", "warn", "error", "critical")
FORMATS = ("text", "json")
REDACTED = "[redacted]"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value not in choices:
            raise ValueError(
                f"logging.{attribute.name} must be one of {', '.join(choices)}, not {value!r}"
            )

    return check


def _check_file(_instance: Any, _attribute: Any, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(
            f"logging.file must be a file path, not {value!r}; leave it unset to log to "
            "stdout (or to twistd's --logfile)"
        )


def _check_retention(_instance: Any, _attribute: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"logging.retention_days must be a whole number of days >= 1, not {value!r}"
        )


@frozen
class LoggingSettings:
    """The ``[logging]`` section of the configuration."""

    level: str = field(default="info", validator=_one_of(LEVELS))
    format: str = field(default="text", validator=_one_of(FORMATS))
    # None: stdout under ``twistd -n``, or twistd's --logfile when given.
    file: str | None = field(default=None, validator=_check_file)
    # Rotated files older than this many days are deleted.
    retention_days: int = field(default=14, validator=_check_retention)


class TextSink(Protocol):
    """Where rendered lines go: a text stream or a ``DailyRotatingFile``."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


# --------------------------------------------------------------------------- redaction

_SECRET_NAME = re.compile(
    r"passw(or)?d|passphrase|token|secret|authori[sz]ation|api[-_]?key|cookie|credential",
    re.IGNORECASE,
)


@lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def _redacted(value: Any, depth: int = 0) -> Any:
    """``value`` with secret-named keys of nested mappings replaced (copies only if needed)."""
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and _is_secret(key)
            else _redacted(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value):
        return [_redacted(item, depth + 1) for item in value]
    return value


def _redact_query(path: str) -> str:
    """Hide secret-named query parameters (``?token=...``) in a request path."""
    head, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and _is_secret(name) else part)
    return head + "?" + "&".join(parts)


# --------------------------------------------------------------------------- rendering

# Keys of events that came through twisted.python.log (log.msg/log.err); their content
# is already in log_text / log_failure / log_system.
_LEGACY_KEYS = frozenset(
    {"message", "time", "system", "isError", "format", "why", "failure", "printed", "logLevel"}
)
_JSON_RESERVED = frozenset({"time", "level", "namespace", "message", "system"})
_JSON_FAILURE_KEYS = frozenset({"exception", "traceback"})


def _is_legacy(event: LogEvent) -> bool:
    return "isError" in event and "message" in event


def _failure_of(event: LogEvent) -> Any:
    failure = event.get("log_failure")
    if failure is None and _is_legacy(event) and isinstance(event.get("failure"), Failure):
        return event["failure"]  # log.err(): twisted keeps it under the old key only
    return failure


def _fields(event: LogEvent) -> dict[str, Any]:
    """The structured fields of an event: no ``log_*`` internals, secrets redacted."""
    legacy = _is_legacy(event)
    fields: dict[str, Any] = {}
    for key, value in event.items():
        if key.startswith("log_") or (legacy and key in _LEGACY_KEYS):
            continue
        fields[key] = REDACTED if _is_secret(key) else _redacted(value)
    return fields


def _message(event: LogEvent, fields: Mapping[str, Any]) -> str:
    if _is_legacy(event) and isinstance(event.get("failure"), Failure):
        # The legacy text repeats the traceback, which we write on its own.
        return str(event.get("why") or "Unhandled Error")
    for key, value in fields.items():
        if value is not event[key]:
            # Something was redacted: format from the redacted values, so a secret named
            # in the format string does not reach the message either.
            return formatEvent({**event, **fields})
    return formatEvent(event)


_last_second: list[Any] = [None, ""]


def _timestamp(when: float | None) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-11-30T03:45:47.123Z``."""
    if when is None:
        when = time.time()
    second = int(when)
    if _last_second[0] != second:
        _last_second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_last_second[1]}.{int((when - second) * 1000):03d}Z"


def _level_name(event: LogEvent) -> str:
    name = getattr(event.get("log_level"), "name", None)
    return name if isinstance(name, str) else "-"


def _failure_parts(failure: Any) -> tuple[str, str]:
    if not isinstance(failure, Failure) or failure.type is None:
        return "unknown", repr(failure)
    name = qual(failure.type).removeprefix("builtins.")
    try:
        return f"{name}: {failure.getErrorMessage()}", failure.getTraceback()
    except Exception:  # a broken __str__ on the exception must not lose the event
        return name, "(traceback could not be formatted)"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Slow path: make anything ``json.dumps`` can write (odd keys, NaN, cycles)."""
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 6:
        return _json_default(value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item, depth + 1) for item in value]
    return _jsonable(_json_default(value), depth + 1)


def event_as_json(event: LogEvent) -> str:
    """One JSON object (no newline) for an event; never raises."""
    fields = _fields(event)
    record: dict[str, Any] = {
        "time": _timestamp(event.get("log_time")),
        "level": _level_name(event),
        "namespace": event.get("log_namespace", "-"),
        "message": _message(event, fields),
    }
    system = event.get("log_system")
    if system is not None and system != "-":
        record["system"] = system
    failure = _failure_of(event)
    for key, value in fields.items():
        clash = key in _JSON_RESERVED or (failure is not None and key in _JSON_FAILURE_KEYS)
        record[f"field_{key}" if clash else key] = value
    if failure is not None:
        record["exception"], record["traceback"] = _failure_parts(failure)
    try:
        return json.dumps(record, default=_json_default, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(record))


_FORMATTER = string.Formatter()


@lru_cache(maxsize=2048)
def _referenced(log_format: str) -> frozenset[str]:
    """Field names a format string interpolates (``{user.id}`` → ``user``)."""
    try:
        names = {
            re.split(r"[.\[(]", name, maxsplit=1)[0]
            for _text, name, _spec, _conv in _FORMATTER.parse(log_format)
            if name
        }
    except ValueError:
        return frozenset()
    return frozenset(names)


_BARE = re.compile(r"[^\s=\"']+")


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | int | float) or value is None:
        return str(value)
    try:
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(_json_default(value))


def event_as_text(event: LogEvent) -> str:
    """One text line (plus an indented traceback for failures); never raises."""
    fields = _fields(event)
    text = _message(event, fields)
    log_format = event.get("log_format")
    shown = _referenced(log_format) if isinstance(log_format, str) else frozenset()
    extra = " ".join(
        f"{key}={_text_value(value)}" for key, value in fields.items() if key not in shown
    )
    if extra:
        text = f"{text} {extra}" if text else extra
    failure = _failure_of(event)
    if failure is not None:
        text = f"{text}\n{_failure_parts(failure)[1]}"
    system = event.get("log_system")
    if system is None or system == "-":
        system = f"{event.get('log_namespace', '-')}#{_level_name(event)}"
    # Continuation lines are indented so a reader can tell where each event starts.
    text = text.rstrip().replace("\n", "\n\t")
    return f"{_timestamp(event.get('log_time'))} [{system}] {text}"


# --------------------------------------------------------------------------- writing

_reported: set[str] = set()


def _report(key: str, message: str) -> None:
    """Say once on the real stderr that logs are being lost (stderr may be redirected)."""
    if key in _reported:
        return
    _reported.add(key)
    stream = sys.__stderr__
    if stream is None:
        return
    try:
        stream.write(f"installsure: {message}\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _recovered(key: str) -> bool:
    if key in _reported:
        _reported.discard(key)
        return True
    return False


@implementer(ILogObserver)
class _LineObserver:
    """Renders each event with ``render`` and writes it as one line to ``sink``."""

    def __init__(self, render: Callable[[LogEvent], str], sink: TextSink) -> None:
        self._render = render
        self._sink = sink
        self._key = f"sink-{id(sink)}"

    def __call__(self, event: LogEvent) -> None:
        try:
            line = self._render(event) + "\n"
        except Exception as error:  # our own bug must never break the code that logged
            line = f"installsure.logs could not render an event: {error!r}\n"
        try:
            self._sink.write(line)
            self._sink.flush()
        except UnicodeEncodeError:
            self._write_escaped(line)
        except (OSError, ValueError) as error:
            _report(self._key, f"cannot write log output: {error}; log lines are being dropped")
        else:
            _recovered(self._key)

    def _write_escaped(self, line: str) -> None:
        encoding = getattr(self._sink, "encoding", None) or "ascii"
        try:
            self._sink.write(line.encode(encoding, "backslashreplace").decode(encoding))
            self._sink.flush()
        except (OSError, ValueError) as error:
            _report(self._key, f"cannot write log output: {error}; log lines are being dropped")


_ROTATED = r"\.(\d{4}-\d{2}-\d{2})(?:\.\d+)?"


class DailyRotatingFile:
    """A log file that rotates at UTC midnight and keeps ``retention_days`` of old files.

    ``write`` never raises: when the file cannot be opened or written (full disk,
    missing permission) the line is dropped, the problem is reported once on stderr,
    and opening is retried at most once a second.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention_days: int = 14,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).absolute()
        self.retention_days = retention_days
        self._clock = clock
        self._lock = threading.Lock()
        self._file: Any = None
        self._next_open_attempt = 0.0
        self._pattern = re.compile(re.escape(self.path.name) + _ROTATED)
        self._key = f"file-{self.path}"
        today = self._today()
        self._day = today
        with self._lock:
            self._rotate_stale(today)
            self._prune(today)
            self._open()

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock(), UTC).date()

    def _rotate_stale(self, today: date) -> None:
        """A file left by an earlier run on an earlier day becomes that day's file."""
        try:
            modified = datetime.fromtimestamp(self.path.stat().st_mtime, UTC).date()
        except OSError:
            return
        if modified < today:
            self._move_aside(modified)

    def _move_aside(self, day: date) -> None:
        target = self.path.with_name(f"{self.path.name}.{day.isoformat()}")
        number = 0
        while target.exists():
            number += 1
            target = self.path.with_name(f"{self.path.name}.{day.isoformat()}.{number}")
        try:
            self.path.rename(target)
        except FileNotFoundError:
            pass
        except OSError as error:
            _report(self._key + "-rotate", f"cannot rotate log file {self.path}: {error}")

    def rotated_files(self) -> list[tuple[date, Path]]:
        """Rotated files of this log, oldest first."""
        found = []
        try:
            names = [entry.name for entry in self.path.parent.iterdir()]
        except OSError:
            return []
        for name in names:
            match = self._pattern.fullmatch(name)
            if match is None:
                continue
            try:
                day = date.fromisoformat(match.group(1))
            except ValueError:
                continue
            found.append((day, self.path.with_name(name)))
        return sorted(found)

    def _prune(self, today: date) -> None:
        oldest_kept = today - timedelta(days=self.retention_days)
        for day, path in self.rotated_files():
            if day < oldest_kept:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as error:
                    _report(self._key + "-prune", f"cannot delete old log file {path}: {error}")

    def _open(self) -> None:
        now = self._clock()
        if now < self._next_open_attempt:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8", errors="backslashreplace")
        except OSError as error:
            self._file = None
            self._next_open_attempt = now + 1.0
            _report(self._key, f"cannot open log file {self.path}: {error}; lines are dropped")

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _rotate(self, today: date) -> None:
        self._close()
        self._move_aside(self._day)
        self._day = today
        self._next_open_attempt = 0.0
        self._prune(today)
        self._open()

    def write(self, text: str, /) -> None:
        with self._lock:
            today = self._today()
            if today > self._day:
                self._rotate(today)
            if self._file is None:
                self._open()
                if self._file is None:
                    return
            try:
                self._file.write(text)
                self._file.flush()
            except OSError as error:
                kind = "disk full" if error.errno == errno.ENOSPC else "write failed"
                _report(self._key, f"log file {self.path}: {kind} ({error}); lines are dropped")
                return
            _recovered(self._key)

    def flush(self) -> None:
        """Lines are flushed as they are written; kept for the stream protocol."""

    def close(self) -> None:
        with self._lock:
            self._close()


def build_observer(settings: LoggingSettings, *, stream: TextSink | None = None) -> ILogObserver:
    """An observer writing events in ``settings.format`` to ``stream``, level-filtered.

    ``stream`` defaults to ``sys.stdout`` as it is now; pass a ``DailyRotatingFile`` for
    files. Writing never raises into the logging code.
    """
    if stream is None or isinstance(stream, LoggingFile):
        # twistd redirects sys.stdout into the log; writing the log there would loop.
        stream = sys.stdout if not isinstance(sys.stdout, LoggingFile) else sys.__stdout__
        if stream is None:
            raise RuntimeError("no stdout to log to; set logging.file")
    render = event_as_json if settings.format == "json" else event_as_text
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(settings.level))
    return FilteringLogObserver(_LineObserver(render, stream), [predicate])


def _file_sink(
    settings: LoggingSettings, path: str | None, clock: Callable[[], float]
) -> TextSink | None:
    if path is None:
        return None
    return DailyRotatingFile(path, retention_days=settings.retention_days, clock=clock)


def start_logging(
    settings: LoggingSettings, *, clock: Callable[[], float] = time.time
) -> ILogObserver:
    """Begin logging outside a twistd/twist runner (``python -m installsure ...``)."""
    observer = build_observer(settings, stream=_file_sink(settings, settings.file, clock))
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return observer


# --------------------------------------------------------------------------- twistd glue


class LoggingRootService(MultiService):
    """Root of the service tree; hands ``observer`` to the twistd application adopting it."""

    def __init__(self, observer: ILogObserver | None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.observer = observer

    def setServiceParent(self, parent: IServiceCollection) -> None:
        # twistd passes its freshly made Application (a Componentized); AppLogger.start
        # then uses this component as the process's log observer.
        application: Any = parent
        if (
            self.observer is not None
            and isinstance(application, Componentized)
            and application.getComponent(ILogObserver, None) is None  # type: ignore[no-untyped-call]
        ):
            application.setComponent(ILogObserver, self.observer)  # type: ignore[no-untyped-call]
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]


def _runner_options(options: object) -> Mapping[str, Any] | None:
    parent = getattr(options, "parent", None)
    return parent if isinstance(parent, Mapping) else None


def configure_logging(
    settings: LoggingSettings,
    options: object = None,
    *,
    clock: Callable[[], float] = time.time,
) -> LoggingRootService:
    """Prepare logging for the process and return the root service for ``makeService``.

    ``options`` is the plugin's ``usage.Options`` as given to ``makeService``; its
    ``parent`` holds twistd's (or twist's) own options. Use the returned service as the
    root of the service tree: twistd logs through our observer once it adopts it.
    Without a runner (``options`` None) nothing is handed over; call ``start_logging``.
    """
    runner = _runner_options(options)
    if runner is None:
        return LoggingRootService(None)
    if "fileLogObserverFactory" in runner:  # twist
        sink = _file_sink(settings, settings.file, clock)

        def factory(stream: TextSink) -> ILogObserver:
            return build_observer(settings, stream=sink if sink is not None else stream)

        runner["fileLogObserverFactory"] = factory  # type: ignore[index]
        return LoggingRootService(None)
    if runner.get("logger") or runner.get("syslog"):
        return LoggingRootService(None)  # the operator chose twistd's own observer
    logfile = runner.get("logfile")
    if logfile == "-":
        # Daemons cannot log to stdout; twistd itself says so and exits if we step aside.
        return LoggingRootService(build_observer(settings) if runner.get("nodaemon") else None)
    path = logfile or settings.file
    if path is None and not runner.get("nodaemon"):
        path = "twistd.log"  # what twistd writes to when a daemon is given no --logfile
    return LoggingRootService(build_observer(settings, stream=_file_sink(settings, path, clock)))


# --------------------------------------------------------------------------- helpers

_access_log = Logger(namespace="installsure.access")
_events_log = Logger(namespace="installsure.events")

ACCESS_FORMAT = "{method} {path} {status} {durationMs}ms"
SLOW_FORMAT = "slow request: {method} {path} {status} took {durationMs}ms (over {thresholdMs}ms)"


def _emit(logger: Logger, level: LogLevel, log_format: str, event: dict[str, Any]) -> None:
    # Built by hand rather than through Logger.emit(**fields): a field may be called
    # "format" or "level" (clashing with emit's parameters), and this skips a re-pack.
    event["log_logger"] = logger
    event["log_level"] = level
    event["log_namespace"] = logger.namespace
    event["log_source"] = None
    event["log_format"] = log_format
    event["log_time"] = time.time()
    logger.observer(event)


def _access_fields(
    *,
    method: str,
    path: str,
    route: str | None,
    status: int,
    duration_ms: float,
    bytes_sent: int,
    request_id: str,
    remote: str,
    user: str | None,
    trace_id: str | None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "method": method,
        "path": _redact_query(path),
        "route": route,
        "status": status,
        "durationMs": round(duration_ms, 2),
        "bytes": bytes_sent,
        "requestId": request_id,
        "remote": remote,
    }
    if user is not None:
        event["user"] = user
    if trace_id is not None:
        event["traceId"] = trace_id
    return event


def log_access(
    *,
    method: str,
    path: str,
    route: str | None,
    status: int,
    duration_ms: float,
    bytes_sent: int,
    request_id: str,
    remote: str,
    user: str | None = None,
    trace_id: str | None = None,
) -> None:
    """One access-log event (namespace ``installsure.access``, info) for a request."""
    event = _access_fields(
        method=method,
        path=path,
        route=route,
        status=status,
        duration_ms=duration_ms,
        bytes_sent=bytes_sent,
        request_id=request_id,
        remote=remote,
        user=user,
        trace_id=trace_id,
    )
    _emit(_access_log, LogLevel.info, ACCESS_FORMAT, event)


def log_slow_request(
    *,
    threshold_ms: float,
    method: str,
    path: str,
    route: str | None,
    status: int,
    duration_ms: float,
    bytes_sent: int,
    request_id: str,
    remote: str,
    user: str | None = None,
    trace_id: str | None = None,
) -> None:
    """A warning (namespace ``installsure.access``) for a request over ``threshold_ms``."""
    event = _access_fields(
        method=method,
        path=path,
        route=route,
        status=status,
        duration_ms=duration_ms,
        bytes_sent=bytes_sent,
        request_id=request_id,
        remote=remote,
        user=user,
        trace_id=trace_id,
    )
    event["thresholdMs"] = threshold_ms
    _emit(_access_log, LogLevel.warn, SLOW_FORMAT, event)


def business_event(name: str, /, **fields: Any) -> None:
    """A business event (namespace ``installsure.events``, info) with ``event=name``.

    ``business_event("project.created", projectId=..., userId=...)``.
    """
    reserved = [key for key in fields if key.startswith("log_") or key == "event"]
    if reserved:
        raise TypeError(
            f"business_event fields may not be named {', '.join(sorted(reserved))}: "
            "'event' is the name and 'log_*' belongs to twisted.logger"
        )
    _emit(_events_log, LogLevel.info, "{event}", {"event": name, **fields})
