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

import time
from typing import Any

from twisted.logger import Logger, LogLevel

from installsure.logging.render import REDACTED, event_as_json, event_as_text, redact_query
from installsure.logging.runner import (
    LoggingRootService,
    build_observer,
    configure_logging,
    start_logging,
)
from installsure.logging.settings import FORMATS, LEVELS, LoggingSettings
from installsure.logging.sinks import DailyRotatingFile, LogFileError, TextSink, flush_logs

__all__ = [
    "FORMATS",
    "LEVELS",
    "REDACTED",
    "DailyRotatingFile",
    "LogFileError",
    "LoggingRootService",
    "LoggingSettings",
    "TextSink",
    "build_observer",
    "business_event",
    "configure_logging",
    "event_as_json",
    "event_as_text",
    "flush_logs",
    "log_access",
    "start_logging",
]

_ACCESS_NAMESPACE = "installsure.access"
_access_log = Logger(namespace=_ACCESS_NAMESPACE)
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
    slow_threshold_ms: float | None = None,
) -> None:
    """One access-log event (namespace ``installsure.access``, info) for a request, and
    a warning with the same fields when it took ``slow_threshold_ms`` or longer."""
    # One dict with twisted.logger's keys built in (see _emit): this runs per request.
    event: dict[str, Any] = {
        "method": method,
        "path": redact_query(path) if "?" in path else path,
        "route": route,
        "status": status,
        "durationMs": round(duration_ms, 2),
        "bytes": bytes_sent,
        "requestId": request_id,
        "remote": remote,
        "log_logger": _access_log,
        "log_level": LogLevel.info,
        "log_namespace": _ACCESS_NAMESPACE,
        "log_source": None,
        "log_format": ACCESS_FORMAT,
        "log_time": time.time(),
    }
    if user is not None:
        event["user"] = user
    if trace_id is not None:
        event["traceId"] = trace_id
    warning = None
    if slow_threshold_ms is not None and duration_ms >= slow_threshold_ms:
        # Observers may keep the event they are given, so the warning gets its own dict.
        warning = {k: v for k, v in event.items() if not k.startswith("log_")}
        warning["thresholdMs"] = slow_threshold_ms
    _access_log.observer(event)
    if warning is not None:
        _emit(_access_log, LogLevel.warn, SLOW_FORMAT, warning)


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
