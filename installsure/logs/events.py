"""The events other parts share: access lines, slow-request warnings, business events.

They are on every request's path, so each is one dict and one observer call.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger, LogLevel

from .render import redact_query

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
