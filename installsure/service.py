"""The service tree of one InstallSure process, built from a validated Config.

Children start in order and stop in reverse (DESIGN.md "The process"):

1. embedded redis-server (only without ``redis.url``/``redis.sentinels``),
2. Redis client, 3. database (migrations at start when ``auto_migrate``) and file
   storage,
4. auth (password-hashing threads, the session revocation subscription) and the
   realtime broker with its backplane (every role: workers publish job events),
5. job workers and the sweeper of orphaned stored files (roles all/worker),
6. the HTTP/WebSocket listeners (roles all/api; ``/ws`` is served by the same site as
   the API),
7. the drain service, which therefore stops first: it takes the listeners, the broker's
   sessions and the workers through the phases of a shutdown (installsure.drain), then
   the rest stops one by one in reverse order.

Nothing here waits for Redis or the database to answer before serving: the process
comes up, ``/readyz`` says what is missing, and the clients reconnect when it appears.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from installsure import __version__, health_checks
from installsure.api.auth import auth_router
from installsure.api.files import files_router
from installsure.api.health import HealthSources, health_router, run_checks
from installsure.api.projects import projects_router
from installsure.api.queue import queue_router
from installsure.api.users import users_router
from installsure.auth.assembly import AuthParts, build_auth
from installsure.auth.membership import DatabaseProjectAccess, MembershipSignals
from installsure.config import Config
from installsure.db.errors import DatabaseConfigError, MigrationError
from installsure.db.service import Database
from installsure.drain import DrainParticipant, DrainService
from installsure.events import DomainEventPublisher
from installsure.files.library import FileLibrary
from installsure.files.orphans import OrphanSweeper, OrphanSweeperService
from installsure.files.processing import file_processing_job_type
from installsure.heap import freeze_once_started
from installsure.http.app import Authenticator
from installsure.http.factory import build_site as http_site
from installsure.http.factory import rate_rules
from installsure.http.ratelimit import RateLimiter
from installsure.http.routing import Router
from installsure.http.site import ApiSite
from installsure.jobs import JobQueue, JobRegistry, WorkerService
from installsure.jobs import metrics as jobs_metrics
from installsure.jobs.admin import QueueAdmin
from installsure.listeners import HttpListeners
from installsure.logs import configure_logging
from installsure.process import (
    StopSignals,
    exit_zero_after_graceful_stop,
    fail_and_stop,
    stopping_on_error,
)
from installsure.realtime.drain import RealtimeDrain
from installsure.realtime.service import (
    HealthAnnouncer,
    RealtimeJobEventPublisher,
    RealtimeService,
)
from installsure.redis.client import RedisService
from installsure.redis.embedded import EmbeddedRedisService
from installsure.redis.target import RedisTarget
from installsure.storage import Storage, build_backend

log = Logger()

HEALTH_REFRESH_SECONDS = 15.0


def redis_target(config: Config, embedded: EmbeddedRedisService | None) -> RedisTarget:
    if embedded is not None:
        return embedded.target
    if config.redis.sentinels:
        sentinels = []
        for address in config.redis.sentinels:
            host, _, port = address.rpartition(":")
            sentinels.append((host, int(port)))
        return RedisTarget.for_sentinels(
            sentinels, config.redis.master_name or "",
            password=config.redis.password, db=config.redis.db,
            sentinel_password=config.redis.sentinel_password,
        )
    assert config.redis.url is not None  # noqa: S101 - load_config guarantees one of the three
    return RedisTarget.from_url(config.redis.url)


def _stop_on_unusable_database(failure: Failure, reactor: Any) -> None:
    """A schema we cannot use will not fix itself: stop with the message, exit 1.

    (An unreachable database is different: the service keeps retrying meanwhile.)
    """
    if failure.check(DatabaseConfigError, MigrationError):  # type: ignore[no-untyped-call]
        fail_and_stop(reactor, "cannot use the database: {reason}",
                      reason=failure.getErrorMessage())


def _metric_total(metric: Any) -> float:
    """The sum of a prometheus_client metric's samples over all its labels (a counter's
    ``_total`` samples only)."""
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if family.type != "counter" or sample.name.endswith("_total"):
                total += sample.value
    return total


class WorkersDrain(DrainParticipant):
    """The job workers in a shutdown: in phase 4 they stop claiming, running jobs get
    the rest of the grace, and the rest go back to their queue without losing an
    attempt (the worker service's own drain); counted from the job metrics."""

    name = "jobs"

    def __init__(self, workers: WorkerService, clock: Any) -> None:
        self.workers = workers
        self.clock = clock

    def counts(self) -> dict[str, int]:
        return {"jobs": int(_metric_total(jobs_metrics.IN_FLIGHT))}

    def finish(self, deadline: float) -> Deferred[Mapping[str, int]]:
        # The grace the workers' drain waits for is what is left of the shutdown's.
        self.workers.grace = max(0.0, deadline - self.clock.seconds())
        returned_before = _metric_total(jobs_metrics.RELEASED)

        def returned(_: object) -> Mapping[str, int]:
            return {"jobs_returned": int(_metric_total(jobs_metrics.RELEASED)
                                         - returned_before)}

        return self.workers.stopService().addCallback(returned)


class _StopCallback(Service):
    """Calls ``fn`` when the service stops."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.fn()


class InstallSureService(MultiService):
    """The process's services; parts are attributes so tests and tools can reach them.

    Unlike ``MultiService``, which stops all children at once, this stops them one by
    one in reverse order, each after the previous one finished: workers must be able to
    put jobs back while Redis still runs, requests must finish before the database goes.
    """

    #: Set by build_service: a second stop signal during the stop goes to the drain.
    stop_signals: StopSignals | None = None

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop_in_reverse_order())

    async def _stop_in_reverse_order(self) -> None:
        started = time.monotonic()
        for service in reversed(list(self)):
            log.debug("stopping {service}", service=service.name or type(service).__name__)
            try:
                await maybeDeferred(service.stopService)
            except Exception:  # one part failing to stop must not keep the rest running
                log.failure("stopping {service} failed", service=service.name or service)
        if self.stop_signals is not None:
            self.stop_signals.release()
        log.info("stopped: every service is down, {seconds:.2f} s after the stop began",
                 seconds=time.monotonic() - started)

    redis: RedisService
    database: Database
    storage: Storage
    drain: DrainService
    queue: JobQueue
    #: Project membership, for the realtime broker's subscription checks.
    project_access: DatabaseProjectAccess
    #: Where domain events (installsure.project.<id>.*, .file) go: the realtime broker.
    events: DomainEventPublisher
    realtime: RealtimeService
    embedded_redis: EmbeddedRedisService | None = None
    workers: WorkerService | None = None
    http: HttpListeners | None = None
    auth: AuthParts | None = None
    orphan_sweeper: OrphanSweeperService | None = None


def build_service(
    config: Config, options: object = None, reactor: Any = None,
    routers: Sequence[Router] = (),
    freeze_heap: bool = False,
) -> IService:
    """The whole process as a service tree (see module docstring); ``routers`` are
    served beside the built-in ones (an embedding program's, a test's). With
    ``freeze_heap``, what start-up leaves on the heap is frozen once the database is
    ready (:mod:`installsure.heap`; the server's own process only)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    root = configure_logging(config.logging, options)
    exit_zero_after_graceful_stop(reactor)
    services = InstallSureService()  # type: ignore[no-untyped-call]
    services.setServiceParent(root)  # type: ignore[no-untyped-call]

    embedded = None
    if config.redis.url is None and not config.redis.sentinels:
        embedded = EmbeddedRedisService(config.data_path, binary=config.redis.embedded_binary,
                                        reactor=reactor)
        embedded.setServiceParent(services)  # type: ignore[no-untyped-call]
        services.embedded_redis = embedded

    redis = RedisService(
        redis_target(config, embedded),
        command_timeout=config.redis.command_timeout,
        connect_timeout=config.redis.connect_timeout,
        pool_size=config.redis.pool_size,
        key_prefix=config.redis.key_prefix,
        reactor=reactor,
        # With the embedded Redis, connect once it answers rather than warn meanwhile.
        start_after=embedded.when_running if embedded is not None else None,
    )
    redis.setServiceParent(services)  # type: ignore[no-untyped-call]
    services.redis = redis

    database = Database(
        config.database_url,
        auto_migrate=config.auto_migrate,
        pool_size=config.database.pool_size,
        busy_timeout=config.database.busy_timeout,
        echo=config.database.echo,
        reactor=reactor,
    )
    database.setServiceParent(services)  # type: ignore[no-untyped-call]
    services.database = database
    database.started().addErrback(_stop_on_unusable_database, reactor)
    if freeze_heap:
        freeze_once_started(reactor, database.started())
    services.project_access = DatabaseProjectAccess(database)

    storage = Storage(build_backend(config.storage, config.data_path),
                      threads=config.storage.threads, reactor=reactor)
    storage.setServiceParent(services)  # type: ignore[no-untyped-call]
    services.storage = storage

    limiter = rate_limiter(config, redis)
    # Every role: the broker checks WAMP tickets and memberships with these.
    auth = build_auth(config.auth, redis=redis, database=database, limiter=limiter,
                      reactor=reactor)
    auth.service.setServiceParent(services)  # type: ignore[no-untyped-call]
    services.auth = auth

    realtime = RealtimeService(config.realtime, redis, auth.verifier, services.project_access,
                               reactor, allowed_origins=config.http.cors_origins)
    realtime.setServiceParent(services)  # type: ignore[no-untyped-call]
    services.realtime = realtime
    # Domain events (projects, files) have the job events' shape: publish(topic, payload).
    services.events = RealtimeJobEventPublisher(realtime)

    # Processors register their job types here (file processing, e-mail, push).
    registry = JobRegistry()
    registry.register(file_processing_job_type())
    queue = JobQueue(redis, registry, config.queues,
                     publisher=RealtimeJobEventPublisher(realtime), reactor=reactor)
    services.queue = queue
    # Added before the workers, so it stops after them: the drain's last transitions
    # still reach the status topic.
    _StopCallback(queue.status.stop).setServiceParent(services)  # type: ignore[no-untyped-call]
    if config.runs_jobs:
        workers = WorkerService(queue, queues=sorted(config.queues.queues),
                                grace=config.shutdown.grace, reactor=reactor)
        workers.setServiceParent(services)  # type: ignore[no-untyped-call]
        services.workers = workers
        jobs_drain = workers
    else:
        jobs_drain = None

    if config.runs_jobs and config.storage.orphan_sweep_interval > 0:
        # Background upkeep goes with the jobs; after storage and the database, so it
        # stops (finishing a sweep in progress) before them.
        sweeper = OrphanSweeperService(
            OrphanSweeper(database, storage, min_age=config.storage.orphan_min_age,
                          clock=reactor),
            config.storage.orphan_sweep_interval, clock=reactor)
        sweeper.setServiceParent(services)  # type: ignore[no-untyped-call]
        services.orphan_sweeper = sweeper

    signals = StopSignals(reactor)
    services.stop_signals = signals
    reactor.callWhenRunning(signals.install)
    drain = DrainService(grace=config.shutdown.grace, delay=config.shutdown_delay,
                         reactor=reactor, on_begin=signals.catch, failing=stopping_on_error)
    services.drain = drain
    if jobs_drain is not None:
        # Jobs drain alongside HTTP, so a stop takes one grace period, not two; the
        # workers' own stop later in the sequence is the same stop and waits for it.
        drain.add(WorkersDrain(jobs_drain, reactor))

    if config.runs_http:
        checks: dict[str, Any] = {
            "redis": lambda: health_checks.redis_check(redis),
            "database": lambda: health_checks.database_check(database),
        }
        if embedded is not None:
            checks["embeddedRedis"] = lambda: health_checks.embedded_redis_check(embedded)
        admin = QueueAdmin(queue)
        checks["queues"] = lambda: health_checks.queues_check(admin)
        checks["storage"] = lambda: health_checks.storage_check(storage)
        sources = HealthSources(
            checks=checks,
            is_draining=drain.is_draining,
            version=__version__,
            environment=config.environment,
            features={
                "realTimeSync": config.features.real_time_sync and config.realtime.enabled,
                "fileProcessing": config.features.file_processing,
                "emailNotifications": config.features.email_notifications,
            },
        )
        # Refresh the health gauges of /metrics even when nobody polls /api/health, and
        # tell admins on installsure.system.health when the verdict changes.
        announce = HealthAnnouncer(realtime)
        refresh = TimerService(  # type: ignore[no-untyped-call]
            HEALTH_REFRESH_SECONDS,
            lambda: run_checks(sources, reactor).addCallback(announce))
        refresh.setServiceParent(services)  # type: ignore[no-untyped-call]
        library = FileLibrary(database, storage, services.project_access,
                              events=services.events, queue=queue,
                              processing=config.features.file_processing)
        router = api_router(config, redis, sources, admin, database, auth, library,
                            events=services.events)
        for extra in routers:
            router.include(extra)
        site = build_site(config, router, limiter, auth.authenticator,
                          realtime if config.realtime.enabled else None)
        listeners = HttpListeners(reactor, config.http.listen, site)
        listeners.setServiceParent(services)  # type: ignore[no-untyped-call]
        services.http = listeners
        drain.add(listeners)
        # Phase 3 of the drain: GOODBYE wamp.close.system_shutdown to every session.
        drain.add(RealtimeDrain(realtime))

    drain.setServiceParent(services)  # type: ignore[no-untyped-call]
    log.info(
        "installsure {version} starting: role {role}, environment {environment}, "
        "data in {data_dir}, database {database}, redis {redis}",
        version=__version__, role=config.role, environment=config.environment,
        data_dir=str(config.data_path.resolve()), database=database.url,
        redis=redis.target.describe(),
    )
    return root


def rate_limiter(config: Config, redis: RedisService) -> RateLimiter | None:
    if not config.http.rate_limit_enabled:
        return None
    return RateLimiter(redis, rate_rules(config.http))


def api_router(  # noqa: PLR0917 - one argument per part the routes serve
    config: Config,
    redis: RedisService,
    sources: HealthSources,
    admin: QueueAdmin,
    database: Database,
    auth: AuthParts,
    library: FileLibrary,
    *,
    events: DomainEventPublisher,
) -> Router:
    """Every resource module's routes (the built-in ones are added by the HTTP layer)."""
    router = Router()
    router.include(health_router(sources))
    router.include(queue_router(admin))
    router.include(auth_router(auth.accounts))
    router.include(users_router(auth.accounts, auth.admin))
    router.include(projects_router(database, events=events, signals=MembershipSignals(redis),
                                   files_deleted=library.project_files_deleted))
    router.include(files_router(
        library, config.upload, presigned_downloads=config.storage.s3_presigned_downloads,
        presign_ttl=config.storage.s3_presign_ttl))
    return router


def build_site(
    config: Config, router: Router, limiter: RateLimiter | None, authenticate: Authenticator,
    realtime: RealtimeService | None = None,
) -> ApiSite:
    """The HTTP API: the routes and the built-ins, and the realtime endpoint at ``/ws``
    when given.

    Requests authenticate through ``authenticate``: in the service tree, with a user's
    access token or the operator token (``API_SECRET``, the service principal).
    """
    mounts = {b"ws": realtime.resource} if realtime is not None else None
    site = http_site(router, config.http, environment=config.environment,
                     rate_limiter=limiter, authenticate=authenticate, mounts=mounts)
    site.noisy = False  # "Starting factory" lines say nothing an operator needs
    return site
