"""The data directory: created and checked at start; a development JWT secret kept there."""

from __future__ import annotations

import os
import secrets
import stat

import attrs

from installsure.config.errors import ConfigError, ConfigProblem
from installsure.config.schema import Config

JWT_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret


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
