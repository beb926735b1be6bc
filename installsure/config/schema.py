"""``Config``: every section of the configuration, gathered from the parts that use them.

Each part keeps its own settings class beside its code (``http.settings``,
``jobs.settings``, ``redis.settings``, ``db.settings``, ``auth.settings``,
``logs.settings``, ``realtime.settings``); the few sections that belong to the process
as a whole are here. A section joins when the code that reads it does: uploads, e-mail,
push and the outside services come with the issues that build them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from attrs import Factory, field, frozen

from installsure.auth.settings import AuthSettings
from installsure.config.values import Environment, HttpUrl, Role, Seconds
from installsure.db.settings import DatabaseSettings
from installsure.http.settings import HttpSettings
from installsure.jobs.settings import JobsSettings
from installsure.logs.settings import LoggingSettings
from installsure.realtime.settings import RealtimeSettings
from installsure.redis.settings import RedisSettings

DEFAULT_LISTEN = "tcp:8000:interface=127.0.0.1"


@frozen
class HttpConfig(HttpSettings):
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    """Twisted endpoint strings to serve HTTP on."""


@frozen
class StorageSettings:
    """Where uploaded files go; read for the storage health check until files arrive."""

    backend: Literal["local", "s3"] = "local"
    local_path: str | None = None
    """None: ``<data_dir>/files``."""
    s3_bucket: str | None = None
    s3_endpoint: HttpUrl | None = None
    s3_region: str | None = None
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)


@frozen
class FeaturesSettings:
    """The old system's ``ENABLE_*`` switches, still accepted and checked."""

    real_time_sync: bool = True
    """Realtime events; ``/info`` reports ``realTimeSync`` true when this and
    ``realtime.enabled`` are both on."""
    file_processing: bool = True
    email_notifications: bool = True


@frozen
class ShutdownSettings:
    grace: Seconds = Seconds(25.0)
    """How long in-flight requests and jobs may take to finish on SIGTERM."""


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
    def runs_http(self) -> bool:
        return self.role in ("all", "api")

    @property
    def runs_jobs(self) -> bool:
        return self.role in ("all", "worker")
