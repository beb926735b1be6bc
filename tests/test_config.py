"""Config layering, strict parsing and error reporting (installsure.config)."""

from __future__ import annotations

import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from installsure.config import (
    DEFAULT_LISTEN,
    Config,
    ConfigError,
    load_config,
    prepare_data_dir,
)
from installsure.config.doc import render

ROOT = Path(__file__).resolve().parent.parent
# A production-grade secret, fixed so failures are reproducible.
STRONG = "Gx2vQ7rN9kLp4mZt8wYc1bHs6dJf3aUe5qXo0iRy"


def problems_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.key: f"{p.source}: {p.message}" for p in excinfo.value.problems}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "installsure.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_layer() -> None:
    """With no file, environment or options, the config is exactly the defaults."""
    config = load_config(environ={})
    assert config == Config()
    assert config.http.listen == (DEFAULT_LISTEN,)
    assert config.shutdown.grace == 25.0
    assert config.database.busy_timeout == 5.0
    assert config.auto_migrate is True


def test_layers_override_in_order(tmp_path: Path) -> None:
    """File overrides defaults, environment overrides the file, options override both."""
    path = write(tmp_path, """
environment = "test"
role = "api"
[shutdown]
grace = "40s"
[redis]
url = "redis://file:6379/0"
command_timeout = "750ms"
""")
    config = load_config(
        config_file=path,
        environ={"INSTALLSURE_REDIS_URL": "redis://env:6379/1"},
        options={"role": "worker", "redis.url": None},
    )
    assert config.environment == "test"
    assert config.role == "worker"
    assert config.shutdown.grace == 40.0
    assert config.redis.url == "redis://env:6379/1"
    assert config.redis.command_timeout == 0.75
    assert config.redis.key_prefix == "is:", "keys not named keep their defaults"


def test_old_variable_names_are_understood() -> None:
    """PORT/HOST, NODE_ENV, REDIS_URL, JWT_SECRET and ENABLE_* keep old deployments working."""
    config = load_config(environ={
        "PORT": "9000", "HOST": "0.0.0.0", "NODE_ENV": "test",
        "REDIS_URL": "redis://old:6379/0", "JWT_SECRET": "s" * 40,
        "ENABLE_REAL_TIME_SYNC": "false", "ENABLE_FILE_PROCESSING": "0",
        "ENABLE_EMAIL_NOTIFICATIONS": "yes",
    })
    assert config.http.listen == ("tcp:9000:interface=0.0.0.0",)
    assert config.environment == "test"
    assert config.redis.url == "redis://old:6379/0"
    assert config.auth.jwt_secret == "s" * 40
    # The old system read the string "false" as true; we do not.
    assert config.features.real_time_sync is False
    assert config.features.file_processing is False
    assert config.features.email_notifications is True


def test_sections_nothing_reads_yet_are_unknown_but_old_switches_are_checked(
    tmp_path: Path,
) -> None:
    """Sections for parts that do not exist yet (e-mail, push, forge, qb) are unknown
    settings, while upload's and realtime's are read; the old ENABLE_REAL_TIME_SYNC is still
    accepted, and a value that is not a boolean is still refused."""
    path = write(tmp_path, "[realtime]\nenabled = true\n[email]\nsmtp_host = 'mail'\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(config_file=path, environ={"INSTALLSURE_PUSH_VAPID_KEY": "1",
                                               "INSTALLSURE_QB_CLIENT_ID": "x"})
    found = problems_of(excinfo)
    assert sorted(found) == ["INSTALLSURE_PUSH_VAPID_KEY", "INSTALLSURE_QB_CLIENT_ID",
                             "email"]
    assert load_config(environ={"INSTALLSURE_UPLOAD_MAX_SIZE": "1"}).upload.max_size == 1
    assert all("no such setting" in m or "unknown setting" in m for m in found.values())
    assert load_config(environ={"ENABLE_REAL_TIME_SYNC": "on"}).features.real_time_sync
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"ENABLE_REAL_TIME_SYNC": "sometimes"})
    assert "environment variable ENABLE_REAL_TIME_SYNC: expected a boolean" in (
        problems_of(excinfo)["features.real_time_sync"]
    )


def test_the_documented_command_prints_the_example_file() -> None:
    """``python -m installsure.config`` prints exactly etc/installsure.toml."""
    result = subprocess.run(
        [sys.executable, "-m", "installsure.config"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=True, env={"PYTHONPATH": str(ROOT)},
    )
    assert result.stdout == (ROOT / "etc" / "installsure.toml").read_text()


def test_new_names_win_over_old_names() -> None:
    """INSTALLSURE_* variables override the old names when both are set."""
    config = load_config(environ={
        "NODE_ENV": "production", "INSTALLSURE_ENVIRONMENT": "test",
    })
    assert config.environment == "test"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Several bad values give one error listing each key, its source and what is expected."""
    path = write(tmp_path, """
role = "boss"
[http]
max_body_size = "lots"
colour = "blue"
[database]
url = "mysql://x/y"
""")
    with pytest.raises(ConfigError) as excinfo:
        load_config(config_file=path, environ={
            "INSTALLSURE_FEATURES_FILE_PROCESSING": "maybe",
            "PORT": "70000",
        })
    found = problems_of(excinfo)
    assert "'all', 'api', 'worker'" in found["role"]
    assert f"file {path}" in found["role"]
    assert "unknown setting" in found["http.colour"]
    assert "sqlite:///" in found["database.url"]
    assert "environment variable INSTALLSURE_FEATURES_FILE_PROCESSING" in (
        found["features.file_processing"]
    )
    assert "boolean" in found["features.file_processing"]
    assert "1 and 65535" in found["http.listen"]
    assert "http.max_body_size" in found
    assert len(excinfo.value.problems) >= 6
    assert "etc/installsure.toml" in excinfo.value.report()


def test_strict_booleans_and_numbers() -> None:
    """Booleans accept only the unambiguous spellings; numbers are not booleans."""
    config = load_config(environ={"INSTALLSURE_DATABASE_ECHO": "on"})
    assert config.database.echo is True
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_DATABASE_ECHO": "nope",
                             "INSTALLSURE_REDIS_POOL_SIZE": "four"})
    found = problems_of(excinfo)
    assert "true/false" in found["database.echo"]
    assert "integer" in found["redis.pool_size"]


def test_durations_take_units() -> None:
    """Durations take units; negative or unit-less nonsense is refused."""
    config = load_config(environ={
        "INSTALLSURE_AUTH_ACCESS_TOKEN_TTL": "15m",
        "INSTALLSURE_REDIS_COMMAND_TIMEOUT": "250ms",
        "INSTALLSURE_DATABASE_BUSY_TIMEOUT": "2",
    })
    assert config.auth.access_token_ttl == 900.0
    assert config.redis.command_timeout == 0.25
    assert config.database.busy_timeout == 2.0
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_SHUTDOWN_GRACE": "soon",
                             "INSTALLSURE_REDIS_CONNECT_TIMEOUT": "-5"})
    found = problems_of(excinfo)
    assert "duration" in found["shutdown.grace"]
    assert "duration" in found["redis.connect_timeout"]


def test_unknown_variables_with_our_prefix_are_errors() -> None:
    """A misspelt INSTALLSURE_ variable is reported; the test-suite's own variable is not."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_REDIS_ULR": "redis://x",
                             "INSTALLSURE_TEST_POSTGRES_URL": "postgresql://x/y"})
    assert list(problems_of(excinfo)) == ["INSTALLSURE_REDIS_ULR"]


def test_malformed_urls_and_endpoints() -> None:
    """Redis URLs, listen endpoints and sentinel addresses are checked before start."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={}, options={
            "redis.url": "http://nope",
            "http.listen": ["bogus:1234"],
        })
    found = problems_of(excinfo)
    assert "redis://" in found["redis.url"]
    assert "option --redis-url" in found["redis.url"]
    assert "endpoint" in found["http.listen"]
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_REDIS_SENTINELS": "a:1,b"})
    found = problems_of(excinfo)
    assert "master_name" in found["redis.master_name"]
    assert "'b' is not host:port" in found["redis.sentinels"]


def test_sentinel_settings_reach_the_redis_target_and_stay_out_of_reprs() -> None:
    """Sentinels, master name and both passwords (the master's and the Sentinels' own)
    from the environment make the Redis target; neither password shows in a repr."""
    from installsure.service import redis_target

    config = load_config(environ={
        "INSTALLSURE_REDIS_SENTINELS": "s1:26379,s2:26380",
        "INSTALLSURE_REDIS_MASTER_NAME": "mymaster",
        "INSTALLSURE_REDIS_PASSWORD": "m-pw-4f1c",
        "INSTALLSURE_REDIS_SENTINEL_PASSWORD": "s-pw-9b2e",
    })
    target = redis_target(config, None)
    assert target.sentinels == (("s1", 26379), ("s2", 26380))
    assert target.master_name == "mymaster"
    assert target.password == "m-pw-4f1c"
    assert target.sentinel_password == "s-pw-9b2e"
    for text in (repr(config), repr(config.redis), repr(target)):
        assert "m-pw-4f1c" not in text
        assert "s-pw-9b2e" not in text


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    """A file that is not TOML or does not exist is named with the reason."""
    path = write(tmp_path, "[http\nlisten = 1")
    with pytest.raises(ConfigError) as excinfo:
        load_config(config_file=path, environ={})
    assert "not valid TOML" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        load_config(config_file=tmp_path / "missing.toml", environ={})
    assert "does not exist" in str(excinfo.value)


def test_queue_settings_merge_per_key(tmp_path: Path) -> None:
    """Setting one key of one queue keeps every other queue and key at its default."""
    path = write(tmp_path, """
[queues]
batch_size = 20
[queues.email-send]
attempts = 7
""")
    config = load_config(config_file=path,
                         environ={"INSTALLSURE_QUEUES_FILE_UPLOAD_CONCURRENCY": "2"})
    defaults = Config().queues.queues
    assert config.queues.batch_size == 20
    assert config.queues.queues["email-send"].attempts == 7
    assert config.queues.queues["email-send"].concurrency == defaults["email-send"].concurrency
    assert config.queues.queues["file-upload"].concurrency == 2
    assert config.queues.queues["file-upload"].attempts == defaults["file-upload"].attempts
    assert set(config.queues.queues) == set(defaults)


def test_production_refuses_missing_or_short_secret() -> None:
    """Production needs a JWT secret of 32 bytes or more."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"NODE_ENV": "production"})
    assert "at least 32 bytes" in problems_of(excinfo)["auth.jwt_secret"]
    assert "secrets.token_urlsafe(48)" in problems_of(excinfo)["auth.jwt_secret"]
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"NODE_ENV": "production", "JWT_SECRET": "short"})
    assert "5 bytes" in problems_of(excinfo)["auth.jwt_secret"]
    config = load_config(environ={"NODE_ENV": "production", "JWT_SECRET": STRONG})
    assert config.auto_migrate is False, "production migrates only when told to"


def test_production_refuses_the_example_secret() -> None:
    """The JWT_SECRET line of etc/installsure.env.example, loaded as it stands with
    NODE_ENV=production, is refused as a placeholder, with how to make a real one."""
    example = (ROOT / "etc" / "installsure.env.example").read_text()
    environ = dict(
        line.split("=", 1) for line in example.splitlines()
        if line and not line.startswith("#")
    )
    assert environ["NODE_ENV"] == "production"
    assert len(environ["JWT_SECRET"].encode()) >= 32, "long enough to pass a length check"
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=environ)
    found = problems_of(excinfo)
    assert list(found) == ["auth.jwt_secret"]
    assert found["auth.jwt_secret"] == (
        "environment variable JWT_SECRET: the JWT secret looks like a placeholder "
        "('change-me'); production needs a random one: make one with "
        '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
    )


@pytest.mark.parametrize(("secret", "reason"), [
    ("x" * 40, "is one character repeated"),
    ("0123456789" * 4, "repeats one piece of 10 characters"),
    ("abcdefghijklmnopqrstuvwxyz012345", "runs through characters in order"),
    ("ab" * 15 + "cd" * 4 + "ababa", "uses only 4 different characters"),
    ("a" * 40 + "bcdefghi", "has too little variety (about 55 bits; needs 80)"),
    ("your-jwt-secret-goes-here-0123456789", "placeholder ('your-jwt-secret')"),
    ("ReplaceMe" + "Kq3vZ9pW2mXr7LtB4nHc8yFs", "placeholder ('replaceme')"),
])
def test_production_refuses_low_entropy_secrets(secret: str, reason: str) -> None:
    """Secrets of 32 bytes or more that are plainly not random are refused in
    production, for the JWT and the API secret alike, each with its reason."""
    assert len(secret.encode()) >= 32
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"NODE_ENV": "production", "JWT_SECRET": secret,
                             "INSTALLSURE_AUTH_API_SECRET": secret})
    found = problems_of(excinfo)
    assert reason in found["auth.jwt_secret"]
    assert "the JWT secret" in found["auth.jwt_secret"]
    assert reason in found["auth.api_secret"]
    assert "environment variable INSTALLSURE_AUTH_API_SECRET" in found["auth.api_secret"]
    assert "secrets.token_urlsafe(48)" in found["auth.api_secret"]
    assert secret not in str(excinfo.value), "the report never quotes a secret"


def test_a_weak_secret_is_reported_with_the_other_problems() -> None:
    """The placeholder secret and values of a wrong type elsewhere are reported by the
    same load, not the secret only once the rest is fixed."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"NODE_ENV": "production", "JWT_SECRET": "change-me" * 4,
                             "INSTALLSURE_REDIS_POOL_SIZE": "four",
                             "INSTALLSURE_LOGGING_LEVEL": "loud"})
    assert sorted(problems_of(excinfo)) == ["auth.jwt_secret", "logging.level",
                                            "redis.pool_size"]


def test_random_secrets_pass_and_weak_ones_pass_outside_production() -> None:
    """What the message tells operators to run passes, so do 32 random hex characters
    and a long passphrase; development and test do not judge secrets at all."""
    for secret in (secrets.token_urlsafe(48), secrets.token_hex(16),
                   "correct horse battery staple under a violet sky"):
        config = load_config(environ={"NODE_ENV": "production", "JWT_SECRET": secret,
                                      "API_SECRET": secret})
        assert config.auth.api_secret == secret
    config = load_config(environ={"NODE_ENV": "development", "JWT_SECRET": "change-me",
                                  "API_SECRET": "x" * 40})
    assert config.auth.jwt_secret == "change-me"


def test_production_without_api_secret_is_fine() -> None:
    """API_SECRET is optional (the admin routes then answer 401); an empty one, as in the
    example file, counts as not set."""
    config = load_config(environ={"NODE_ENV": "production", "JWT_SECRET": STRONG,
                                  "API_SECRET": ""})
    assert config.auth.api_secret is None


def test_development_secret_is_generated_once(tmp_path: Path) -> None:
    """Development keeps one generated secret in the data directory, readable only by us."""
    config = load_config(environ={}, options={"data_dir": str(tmp_path / "data")})
    first = prepare_data_dir(config)
    second = prepare_data_dir(config)
    assert first.auth.jwt_secret is not None
    assert len(first.auth.jwt_secret) >= 32
    assert first.auth.jwt_secret == second.auth.jwt_secret
    secret_file = tmp_path / "data" / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    """A data directory that cannot be created names the path and what to do."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = load_config(environ={}, options={"data_dir": str(blocker / "data")})
    with pytest.raises(ConfigError) as excinfo:
        prepare_data_dir(config)
    assert "cannot create or write" in str(excinfo.value)
    assert "--data-dir" in str(excinfo.value)


def test_example_file_is_current_and_loads_to_defaults() -> None:
    """etc/installsure.toml is what configdoc renders and loads to exactly the defaults."""
    example = ROOT / "etc" / "installsure.toml"
    assert example.read_text() == render(), (
        "etc/installsure.toml is stale: run `python -m installsure.config > "
        "etc/installsure.toml`"
    )
    assert load_config(config_file=example, environ={}) == Config()


def test_example_file_names_every_key_and_variable() -> None:
    """Every setting appears in the example with its environment variable."""
    text = render()
    for name in ("listen", "command_timeout", "jwt_secret", "max_body_size", "grace",
                 "retention_days", "lease_ttl", "real_time_sync"):
        assert f"{name} =" in text, name
    assert "INSTALLSURE_QUEUES_EMAIL_SEND_ATTEMPTS" in text
    assert "old name JWT_SECRET" in text
    assert "old name PORT and HOST" in text


def test_relative_data_dir_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default ./data is resolved once, so child processes and a daemonized twistd
    (other working directories) use the same directory."""
    monkeypatch.chdir(tmp_path)
    config = prepare_data_dir(load_config(environ={}))
    assert config.data_dir == str(tmp_path.resolve() / "data")
    assert Path(config.data_dir).is_absolute()


def test_http_idle_timeout_is_a_duration_and_reaches_the_site() -> None:
    """``http.idle_timeout`` takes units, refuses zero, and becomes the idle timeout of
    the HTTP connections."""
    from installsure.http import Router, build_site

    config = load_config(environ={"INSTALLSURE_HTTP_IDLE_TIMEOUT": "2m"})
    assert config.http.idle_timeout == 120.0
    assert build_site(Router(), config.http).timeOut == 120.0
    assert load_config(environ={}).http.idle_timeout == 75.0
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_HTTP_IDLE_TIMEOUT": "0s"})
    assert "above 0" in problems_of(excinfo)["http.idle_timeout"]


def test_values_refused_by_a_sections_own_checks_name_their_key_and_source() -> None:
    """A value a settings class refuses (not just a wrong type) is reported under its own
    key and where it came from, not as a problem of the whole section."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_LOGGING_RETENTION_DAYS": "0"})
    problem = excinfo.value.problems[0]
    assert problem.key == "logging.retention_days"
    assert "INSTALLSURE_LOGGING_RETENTION_DAYS" in problem.source
    assert problem.message.startswith("must be a whole number of days")


def test_every_refused_value_is_reported_in_one_go() -> None:
    """Several values one section refuses, next to a wrong type in the same section and
    in a named queue, are all reported by one load, each under its own key."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={
            "INSTALLSURE_HTTP_IDLE_TIMEOUT": "0s",
            "INSTALLSURE_HTTP_MAX_BODY_SIZE": "0",
            "INSTALLSURE_HTTP_RATE_LIMIT_DEFAULT": "lots",
            "INSTALLSURE_HTTP_TRUST_PROXY": "perhaps",
            "INSTALLSURE_LOGGING_LEVEL": "loud",
            "INSTALLSURE_LOGGING_RETENTION_DAYS": "0",
            "INSTALLSURE_QUEUES_EMAIL_SEND_ATTEMPTS": "0",
            "INSTALLSURE_QUEUES_EMAIL_SEND_BACKOFF": "random",
        })
    found = problems_of(excinfo)
    assert sorted(found) == [
        "http.idle_timeout", "http.max_body_size", "http.rate_limit_default",
        "http.trust_proxy", "logging.level", "logging.retention_days",
        "queues.email-send.attempts", "queues.email-send.backoff",
    ]
    assert found["queues.email-send.attempts"].endswith(": must be greater than 0, got 0")
    assert len(excinfo.value.problems) == len(found)  # each reported once


@pytest.mark.parametrize(
    ("environ", "delay"),
    [
        ({}, 0.0),
        ({"INSTALLSURE_ENVIRONMENT": "test"}, 0.0),
        ({"NODE_ENV": "production", "JWT_SECRET": STRONG}, 5.0),
        ({"NODE_ENV": "production", "JWT_SECRET": STRONG,
          "INSTALLSURE_SHUTDOWN_DELAY": "0"}, 0.0),
        ({"INSTALLSURE_SHUTDOWN_DELAY": "1500ms"}, 1.5),
        ({"INSTALLSURE_SHUTDOWN_DELAY": "3", "INSTALLSURE_ROLE": "worker"}, 0.0),
    ],
)
def test_shutdown_delay_defaults_by_environment_and_role(
    environ: dict[str, str], delay: float
) -> None:
    """shutdown.delay (INSTALLSURE_SHUTDOWN_DELAY) is 5 s in production and 0 in
    development and test unless set; a worker, with no /readyz to announce on, has none."""
    assert load_config(environ=environ).shutdown_delay == delay


def test_a_delay_not_shorter_than_the_grace_is_refused() -> None:
    """The delay is spent out of shutdown.grace: a delay as long as the grace (set, or
    production's default against a short grace) is a config error naming both."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"INSTALLSURE_SHUTDOWN_DELAY": "30s"})
    problem = problems_of(excinfo)["shutdown.delay"]
    assert problem.startswith("environment variable INSTALLSURE_SHUTDOWN_DELAY")
    assert "shorter than shutdown.grace (25 s)" in problem
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"NODE_ENV": "production", "JWT_SECRET": STRONG,
                             "INSTALLSURE_SHUTDOWN_GRACE": "4"})
    problem = problems_of(excinfo)["shutdown.delay"]
    assert "the production default" in problem
    assert "Lower shutdown.delay or raise shutdown.grace" in problem
    # A worker has no delay, so a short grace is fine there.
    load_config(environ={"NODE_ENV": "production", "JWT_SECRET": STRONG,
                         "INSTALLSURE_SHUTDOWN_GRACE": "4", "INSTALLSURE_ROLE": "worker"})
