"""Password hashing with argon2id on a thread pool of its own.

One hash costs tens of megabytes and a good part of a second of CPU by design, so it
must never run on the reactor thread: :class:`PasswordHasher` hashes and verifies on a
small dedicated ``ThreadPool`` (argon2-cffi releases the GIL while it works, so the
reactor keeps serving). Work waiting for a thread is bounded: past
``queue_limit`` a call fails at once with :class:`PasswordHasherBusy` (the API answers
503), so a flood of logins cannot queue memory and latency without end.

An unknown e-mail address is checked against a dummy hash of the same parameters
(:meth:`verify_unknown`), so it takes as long as a wrong password and the answer
cannot tell the two apart. When the parameters change, :meth:`needs_rehash` says so
for each stored hash and the login rehashes it.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

import argon2
from argon2.exceptions import VerificationError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from installsure.auth.settings import AuthSettings

log = Logger(namespace="installsure.auth.passwords")

T = TypeVar("T")

_HASH_LEN = 32
_SALT_LEN = 16


#: How much lower than the reactor's the hashing threads' CPU priority is (Linux nice).
HASHING_NICENESS = 10
_lowered = threading.local()


def _yielding(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` on this pool thread, first lowering the thread's CPU priority once.

    argon2 keeps a core busy for its whole run; on a machine with few cores the reactor
    thread would queue behind it and every request would wait. Linux schedules threads
    on their own, so this thread alone yields to the reactor.
    """
    if not getattr(_lowered, "done", False):
        _lowered.done = True
        with suppress(AttributeError, OSError):  # not Linux, or not permitted
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, 0) + HASHING_NICENESS)
    return fn(*args)


def default_password_threads() -> int:
    """One fewer than the CPUs this process may run on, from 1 to 4 (see the setting
    ``auth.password_threads``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus - 1))


class PasswordHasherBusy(Exception):  # noqa: N818 - reads as the condition it is
    """Too many hashes are waiting for a thread; try again shortly."""


class PasswordHasher(Service):
    """argon2id hashing and verification off the reactor thread (see module docstring)."""

    name = "passwords"

    def __init__(
        self,
        *,
        time_cost: int = 2,
        memory_kib: int = 19456,
        parallelism: int = 1,
        threads: int = 2,
        queue_limit: int = 64,
        reactor: Any = None,
    ) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
            hash_len=_HASH_LEN, salt_len=_SALT_LEN, type=argon2.Type.ID,
        )
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._reactor = reactor
        self._threads = threads
        self._queue_limit = queue_limit
        self._pool: ThreadPool | None = None
        self._pending = 0
        self._shutdown_trigger: Any = None
        # A well-formed hash of these parameters that no password matches: verifying
        # against it costs exactly what verifying a real one does.
        self._dummy = "$argon2id$v=19$m={},t={},p={}${}${}".format(
            memory_kib, time_cost, parallelism,
            base64.b64encode(os.urandom(_SALT_LEN)).decode().rstrip("="),
            base64.b64encode(os.urandom(_HASH_LEN)).decode().rstrip("="),
        )

    @classmethod
    def from_settings(cls, settings: AuthSettings, reactor: Any = None) -> PasswordHasher:
        return cls(
            time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            threads=settings.password_threads or default_password_threads(),
            queue_limit=settings.password_queue_limit, reactor=reactor,
        )

    # -- service life -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._pool = ThreadPool(minthreads=0, maxthreads=self._threads,
                                name="installsure-passwords")
        self._pool.start()
        # Idle pool threads would keep the process alive if the reactor stops first.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._stop_pool)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self._stop_pool()

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if self._shutdown_trigger is not None:
            with suppress(ValueError, KeyError):
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if pool is not None:
            pool.stop()

    # -- the work ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Hashes running or waiting for a thread now."""
        return self._pending

    def hash(self, password: str) -> Deferred[str]:
        return self._on_pool(self.hash_now, password)

    def verify(self, stored_hash: str, password: str) -> Deferred[bool]:
        """True when ``password`` matches ``stored_hash``; False otherwise (also for a
        stored value that is not an argon2 hash at all)."""
        return self._on_pool(self.verify_now, stored_hash, password)

    def verify_unknown(self, password: str) -> Deferred[bool]:
        """As long as :meth:`verify` takes, for an account that does not exist: False."""
        return self._on_pool(self.verify_now, self._dummy, password).addCallback(
            lambda _matched: False)

    def needs_rehash(self, stored_hash: str) -> bool:
        """The stored hash was made with other parameters than the configured ones
        (cheap: it only parses the hash's header)."""
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except ValueError:  # argon2's InvalidHash(Error) is one, in every release
            return True

    # -- synchronous forms, for the operator CLI and pool threads ----------------------

    def hash_now(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify_now(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, password)
        except VerificationError:  # the mismatch, and hashes argon2 cannot check
            return False
        except ValueError:  # InvalidHash(Error): not an argon2 hash
            log.warn("a stored password hash is not an argon2 hash; the login is refused")
            return False

    def _on_pool(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._queue(_yielding, fn, *args)

    def _queue(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        pool = self._pool
        if pool is None:
            return fail(RuntimeError("the password hasher is not running"))
        if self._pending >= self._queue_limit:
            return fail(PasswordHasherBusy(
                f"{self._pending} password hashes are already waiting for a thread"))
        self._pending += 1

        def done(result: T) -> T:
            self._pending -= 1
            return result

        d: Deferred[T] = deferToThreadPool(self._reactor, pool, fn, *args)
        return d.addBoth(done)
