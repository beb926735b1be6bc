"""Where rendered lines go: streams and the daily-rotating file; writes never raise."""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from twisted.logger import ILogObserver, LogEvent, LogLevel
from zope.interface import implementer


class TextSink(Protocol):
    """Where rendered lines go: a text stream or a ``DailyRotatingFile``."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


class _Problems:
    """Problems of one log destination, each said once on stderr until it clears.

    The real stderr (``sys.__stderr__``): twistd may have redirected ``sys.stderr``
    into the very log that is failing.
    """

    def __init__(self) -> None:
        self._current: set[str] = set()

    def report(self, kind: str, message: str) -> None:
        if kind in self._current:
            return
        self._current.add(kind)
        stream = sys.__stderr__
        if stream is None:
            return
        try:
            stream.write(f"installsure: {message}\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def clear(self, kind: str) -> None:
        self._current.discard(kind)


@implementer(ILogObserver)
class LineObserver:
    """Renders each event with ``render`` and writes it as one line to ``sink``.

    With ``batch_size`` above 1, routine events are kept and rendered in batches: one
    tight loop over the renderer and one write per batch cost about a fifth less CPU per
    HTTP request than a render and a write per event, as the renderer's code stays warm.
    Warnings, errors and failures write the batch and themselves at once and flush; the
    background flusher writes what is left within a fifth of a second, and at exit.
    """

    def __init__(
        self, render: Callable[[LogEvent], str], sink: TextSink, *,
        level: LogLevel = LogLevel.debug, batch_size: int = 1,
    ) -> None:
        self._render = render
        self._sink = sink
        self._problems = _Problems()
        self._min_rank = _RANK[level]
        self._batch_size = batch_size
        self._batch: list[LogEvent] = []
        # Events come from any thread; one lock keeps lines whole and in order.
        self._lock = threading.Lock()

    def __call__(self, event: LogEvent) -> None:
        # The level filter is a dict lookup here rather than twisted's
        # FilteringLogObserver, which walks namespaces for every event (every request).
        rank = _RANK.get(event.get("log_level"), _INFO_RANK)
        if rank < self._min_rank:
            return
        urgent = rank >= _WARN_RANK or "log_failure" in event
        with self._lock:
            batch = self._batch
            batch.append(event)
            if urgent or len(batch) >= self._batch_size:
                self._batch = []
                self._write(batch, flush=urgent)
                if urgent:
                    return
            elif len(batch) > 1:
                return  # the flusher already knows about this batch
        _background_flusher.mark(self)

    def flush(self) -> None:
        with self._lock:
            events, self._batch = self._batch, []
            self._write(events, flush=True)

    def _write(self, events: list[LogEvent], *, flush: bool) -> None:
        lines = []
        for event in events:
            try:
                lines.append(self._render(event) + "\n")
            except Exception as error:  # our own bug must never break the code that logged
                lines.append(f"installsure.logs could not render an event: {error!r}\n")
        text = "".join(lines)
        try:
            if text:
                self._sink.write(text)
            if flush:
                self._sink.flush()
        except UnicodeEncodeError:
            self._write_escaped(text)
        except (OSError, ValueError) as error:
            self._problems.report(
                "write", f"cannot write log output: {error}; log lines are being dropped"
            )
        else:
            self._problems.clear("write")

    def _write_escaped(self, text: str) -> None:
        encoding = getattr(self._sink, "encoding", None) or "ascii"
        try:
            self._sink.write(text.encode(encoding, "backslashreplace").decode(encoding))
            self._sink.flush()
        except (OSError, ValueError) as error:
            self._problems.report(
                "write", f"cannot write log output: {error}; log lines are being dropped"
            )


# Warnings, errors and failures reach the disk at once (a crash must not eat them); the
# rest is flushed in the background.
_RANK = {level: rank for rank, level in enumerate(
    (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical))}
_INFO_RANK = _RANK[LogLevel.info]
_WARN_RANK = _RANK[LogLevel.warn]


class _BackgroundFlusher:
    """Flushes observers with buffered lines every ``interval`` seconds, on its own thread.

    Flushing after every line costs a system call per HTTP request (about a tenth of
    the request's CPU time); a fifth of a second of delay in ``tail -f`` costs nothing.
    A daemon thread rather than a reactor timer, so it works before the reactor runs,
    under any runner, and after it stops; the last lines are flushed at exit.

    Threads do not survive ``fork``, and twistd forks to daemonize *after* logging
    starts: a thread started before would be gone in the server, whose routine lines
    then waited for a full batch. So under a runner the thread is held back
    (``hold``) until the service tree starts (``release``), which is after the fork. A
    thread that runs at a fork anyway is started again in the child, but a fork in the
    middle of its flush would leave that observer's lock taken in the child: code that
    forks should hold the thread back too.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._pending: set[LineObserver] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False

    def mark(self, observer: LineObserver) -> None:
        if observer in self._pending:
            return
        with self._lock:
            self._pending.add(observer)
            self._start()

    def hold(self) -> None:
        """Start no thread until ``release`` (a runner will fork before that)."""
        with self._lock:
            self._held = True

    def release(self) -> None:
        """Start the thread (now, when lines are waiting, else at the next line)."""
        with self._lock:
            self._held = False
            if self._pending:
                self._start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        # Called with the lock held.
        if self._thread is None and not self._held:
            self._thread = threading.Thread(
                target=self._run, name="installsure-log-flusher", daemon=True
            )
            self._thread.start()

    def after_fork_in_child(self) -> None:
        # Only the forking thread lives on: the lock may be held by a thread that is
        # gone, and the flusher thread is gone.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        if self._pending:
            with self._lock:
                self._start()

    def flush_all(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
        for observer in pending:
            observer.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self.flush_all()


_background_flusher = _BackgroundFlusher()
flush_logs = _background_flusher.flush_all
hold_background_flush = _background_flusher.hold
release_background_flush = _background_flusher.release
# Lines still buffered at exit are written then, whether or not the thread ever ran.
atexit.register(flush_logs)
# Buffered lines are written before a fork, so that only the parent has them: if both
# kept a copy, both would write it.
os.register_at_fork(
    before=flush_logs, after_in_child=_background_flusher.after_fork_in_child
)


_ROTATED = r"\.(\d{4}-\d{2}-\d{2})(?:\.\d+)?"


def _start_of_next_day(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 86400.0


class LogFileError(Exception):
    """The log file cannot be opened at start; the message says what to fix."""


class DailyRotatingFile:
    """A log file that rotates at UTC midnight and keeps ``retention_days`` of old files.

    Opening it at start raises ``LogFileError`` (a wrong path is a configuration
    mistake); after that ``write`` never raises: when the file cannot be reopened or
    written (full disk, directory removed) the line is dropped, the problem is reported
    once on stderr, and reopening is retried at most once a second.
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
        self._problems = _Problems()
        today = self._today()
        self._day = today
        self._next_day_at = _start_of_next_day(today)
        with self._lock:
            self._rotate_stale(today)
            self._prune(today)
            try:
                self._file = self._opened()
            except OSError as error:
                # At start a bad path is a configuration mistake: say so and stop, rather
                # than run a server that silently drops its log.
                raise LogFileError(
                    f"cannot open log file {self.path}: {error.strerror or error}; "
                    "check logging.file (or twistd --logfile) and the directory's permissions"
                ) from error

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock(), UTC).date()

    def _rotate_if_new_day(self) -> None:
        # One float comparison per line; the date is only worked out at midnight.
        if self._clock() >= self._next_day_at:
            today = self._today()
            if today > self._day:
                self._rotate(today)
            self._next_day_at = _start_of_next_day(self._day)

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
            self._problems.report("rotate", f"cannot rotate log file {self.path}: {error}")

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
                    self._problems.report("prune", f"cannot delete old log file {path}: {error}")

    def _opened(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.open("a", encoding="utf-8", errors="backslashreplace")

    def _open(self) -> None:
        now = self._clock()
        if now < self._next_open_attempt:
            return
        try:
            self._file = self._opened()
        except OSError as error:
            self._file = None
            self._next_open_attempt = now + 1.0
            self._problems.report(
                "write", f"cannot open log file {self.path}: {error}; lines are dropped"
            )

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _rotate(self, today: date) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()  # buffered lines belong to the day being closed
        try:
            empty = self.path.stat().st_size == 0
        except OSError:
            empty = False
        self._close()
        if not empty:  # a day without lines leaves no file behind
            self._move_aside(self._day)
        self._day = today
        self._next_open_attempt = 0.0
        self._prune(today)
        self._open()

    def write(self, text: str, /) -> None:
        """Buffered: the observer flushes (at once for warnings, else within 0.2 s)."""
        with self._lock:
            self._rotate_if_new_day()
            if self._file is None:
                self._open()
                if self._file is None:
                    return
            try:
                self._file.write(text)
            except OSError as error:
                kind = "disk full" if error.errno == errno.ENOSPC else "write failed"
                self._problems.report(
                    "write", f"log file {self.path}: {kind} ({error}); lines are dropped"
                )
                return
            self._problems.clear("write")

    def flush(self) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.flush()
            except OSError as error:
                kind = "disk full" if error.errno == errno.ENOSPC else "write failed"
                self._problems.report(
                    "write", f"log file {self.path}: {kind} ({error}); lines are dropped"
                )

    def reopen(self) -> None:
        """Close and reopen the file, for an outside tool (logrotate) that moved it."""
        with self._lock:
            self._close()
            self._next_open_attempt = 0.0
            self._open()

    def close(self) -> None:
        with self._lock:
            self._close()
