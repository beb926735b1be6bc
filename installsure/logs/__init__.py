"""Log observers (text, JSON lines, daily rotation with retention) and log helpers.

Everything in InstallSure logs through ``twisted.logger`` with structured fields. This
package decides how those events leave the process:

* ``build_observer(settings, stream=...)`` renders events as classic-looking text lines
  with the unreferenced structured fields appended, or as JSON lines (one object per
  line: ``time``, ``level``, ``namespace``, ``message`` and every field), filtered by
  ``logging.level``. Fields named like a secret are written as ``[redacted]``.
* ``DailyRotatingFile`` is the file behind ``logging.file``: it rotates at UTC midnight
  (``installsure.log`` → ``installsure.log.2026-11-30``), deletes rotated files older than
  ``logging.retention_days`` at start and at each rotation, and never raises into the
  code that logged (a full disk is reported once on the real stderr).
* ``log_access`` (with its slow-request warning) and ``business_event`` emit the events
  other parts share (``events``).

``runner`` explains how the observer reaches twistd and twist.
"""

from installsure.logs.events import ACCESS_FORMAT, SLOW_FORMAT, business_event, log_access
from installsure.logs.render import REDACTED, event_as_json, event_as_text, redact_query
from installsure.logs.runner import (
    LoggingRootService,
    build_observer,
    configure_logging,
    start_logging,
)
from installsure.logs.settings import FORMATS, LEVELS, LoggingSettings
from installsure.logs.sinks import DailyRotatingFile, LogFileError, TextSink, flush_logs

__all__ = [
    "ACCESS_FORMAT",
    "FORMATS",
    "LEVELS",
    "REDACTED",
    "SLOW_FORMAT",
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
    "redact_query",
    "start_logging",
]
