"""Building the observer and handing it to twistd, twist or a plain script.

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

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import IServiceCollection, MultiService
from twisted.logger import (
    ILogObserver,
    LoggingFile,
    LogLevel,
    globalLogBeginner,
)
from twisted.python.components import Componentized

from .render import event_as_json, event_as_text
from .settings import LoggingSettings
from .sinks import (
    DailyRotatingFile,
    LineObserver,
    TextSink,
    hold_background_flush,
    release_background_flush,
)

# Events rendered and written together by the process's own observers (see LineObserver).
PROCESS_BATCH = 64


def build_observer(
    settings: LoggingSettings, *, stream: TextSink | None = None, batch_size: int = 1
) -> ILogObserver:
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
    return LineObserver(
        render, stream, level=LogLevel.levelWithName(settings.level), batch_size=batch_size
    )


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
    observer = build_observer(
        settings, stream=_file_sink(settings, settings.file, clock), batch_size=PROCESS_BATCH
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return observer


# --------------------------------------------------------------------------- twistd glue


class LoggingRootService(MultiService):
    """Root of the service tree; hands ``observer`` to the twistd application adopting it,
    and starts the background log flusher when the tree starts (after twistd forked)."""

    def __init__(self, observer: ILogObserver | None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.observer = observer

    def startService(self) -> None:
        release_background_flush()
        super().startService()  # type: ignore[no-untyped-call]

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
    Raises ``LogFileError`` (with a message for the operator) when the log file cannot
    be opened.
    """
    runner = _runner_options(options)
    if runner is None:
        return LoggingRootService(None)
    # twistd forks to daemonize between now and startService; a thread started before
    # would not be in the server (see _BackgroundFlusher).
    hold_background_flush()
    if "fileLogObserverFactory" in runner:  # twist
        sink = _file_sink(settings, settings.file, clock)

        def factory(stream: TextSink) -> ILogObserver:
            return build_observer(
                settings, stream=sink if sink is not None else stream, batch_size=PROCESS_BATCH
            )

        runner["fileLogObserverFactory"] = factory  # type: ignore[index]
        return LoggingRootService(None)
    if runner.get("logger") or runner.get("syslog"):
        return LoggingRootService(None)  # the operator chose twistd's own observer
    logfile = runner.get("logfile")
    if logfile == "-":
        # Daemons cannot log to stdout; twistd itself says so and exits if we step aside.
        return LoggingRootService(
            build_observer(settings, batch_size=PROCESS_BATCH) if runner.get("nodaemon") else None
        )
    path = logfile or settings.file
    if path is None and not runner.get("nodaemon"):
        path = "twistd.log"  # what twistd writes to when a daemon is given no --logfile
    return LoggingRootService(build_observer(
        settings, stream=_file_sink(settings, path, clock), batch_size=PROCESS_BATCH
    ))
