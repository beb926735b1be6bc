"""``Config``: every section of the configuration, gathered from the parts that use them.

Each part keeps its own settings class beside its code (``http.settings``,
``jobs.settings``, ``redis.settings``, ``db.settings``, ``auth.settings``,
``logs.settings``, ``storage.settings``, ``files.settings``, ``realtime.settings``);
the few sections that belong to the process as a whole are here. A section joins when
the code that reads it does: e-mail, push and the outside services come with the issues
that build them.
"""

from __future__ import annotations

from pathlib import Path

from attrs import Factory, frozen

from installsure.auth.settings import AuthSettings
from installsure.config.values import Environment, Role, Seconds
from installsure.db.settings import DatabaseSettings
from installsure.files.settings import UploadSettings
from installsure.http.settings import HttpSettings
from installsure.jobs.settings import JobsSettings
from installsure.logs.settings import LoggingSettings
from installsure.realtime.settings import RealtimeSettings
from installsure.redis.settings import RedisSettings
from installsure.storage.settings import StorageSettings

DEFAULT_LISTEN = "tcp:8000:interface=127.0.0.1"


@frozen
class HttpConfig(HttpSettings):
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    """Twisted endpoint strings to serve HTTP on."""


@frozen
class FeaturesSettings:
    """The old system's ``ENABLE_*`` switches, still accepted and checked."""

    real_time_sync: bool = True
    """Realtime events; ``/info`` reports ``realTimeSync`` true when this and
    ``realtime.enabled`` are both on."""
    file_processing: bool = True
    email_notifications: bool = True


#: ``shutdown.delay`` when it is not set, by environment: long enough in production for
#: a load balancer to see ``/readyz`` fail and stop sending; none elsewhere, so that
#: Ctrl-C stays instant.
DEFAULT_SHUTDOWN_DELAY = {"production": Seconds(5.0), "development": Seconds(0.0),
                          "test": Seconds(0.0)}


@frozen
class ShutdownSettings:
    """What SIGTERM does (README.rst, "Stopping")."""

    grace: Seconds = Seconds(25.0)
    """How long the whole drain may take, from SIGTERM: the delay below, then in-flight
    requests and jobs finish; what still runs after it is answered 503 or put back."""
    delay: Seconds | None = None
    """How long ``/readyz`` answers 503 before the listeners close, while every other
    request is served as usual (a second SIGTERM or SIGINT cuts it short). Spent out
    of ``grace``, so it must be shorter. None: 5 s in production, 0 in development and
    test. Processes without HTTP (role worker) have none."""


@frozen
class Config:
    environment: Environment = "development"
    data_dir: str = "./data"
    role: Role = "all"
    http: HttpConfig = Factory(HttpConfig)
    redis: RedisSettings = Factory(RedisSettings)
    database: DatabaseSettings = Factory(DatabaseSettings)
    auth: AuthSettings = Factory(AuthSettings)
    storage: StorageSettings = Factory(StorageSettings)
    upload: UploadSettings = Factory(UploadSettings)
    queues: JobsSettings = Factory(JobsSettings)
    realtime: RealtimeSettings = Factory(RealtimeSettings)
    logging: LoggingSettings = Factory(LoggingSettings)
    features: FeaturesSettings = Factory(FeaturesSettings)
    shutdown: ShutdownSettings = Factory(ShutdownSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.data_path / 'installsure.db').resolve()}"

    @property
    def auto_migrate(self) -> bool:
        if self.database.auto_migrate is None:
            return self.environment != "production"
        return self.database.auto_migrate

    @property
    def shutdown_delay(self) -> Seconds:
        """``shutdown.delay``, or its environment's default; 0 without HTTP to announce on."""
        if not self.runs_http:
            return Seconds(0.0)
        if self.shutdown.delay is None:
            return DEFAULT_SHUTDOWN_DELAY[self.environment]
        return self.shutdown.delay

    @property
    def runs_http(self) -> bool:
        return self.role in ("all", "api")

    @property
    def runs_jobs(self) -> bool:
        return self.role in ("all", "worker")
