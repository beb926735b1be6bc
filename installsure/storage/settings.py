"""Settings of file storage (config section ``storage``).

Plain values only, so the config loader fills them from TOML and the environment. The
S3 keys may stay unset: boto3 then finds credentials its usual way (``AWS_*``
variables, an instance role, ``~/.aws``).
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import field, frozen

from installsure.config.values import HttpUrl, InvalidSettingError, Seconds

#: S3 refuses multipart parts under 5 MiB (all but the last one).
S3_MIN_PART_SIZE = 5 * 1024 * 1024
#: ... and more than 10,000 parts: with 8 MiB parts an object may reach 78 GiB.
S3_MAX_PARTS = 10_000


def _check_part_size(_inst: object, attribute: Any, value: int) -> None:
    if not S3_MIN_PART_SIZE <= value <= 5 * 1024**3:
        raise InvalidSettingError(
            attribute.name,
            f"storage.{attribute.name} must be from {S3_MIN_PART_SIZE} (5 MiB, S3's "
            f"smallest part) to 5 GiB, got {value!r}",
        )


def _check_threads(_inst: object, attribute: Any, value: int) -> None:
    if not 1 <= value <= 64:
        raise InvalidSettingError(
            attribute.name, f"storage.{attribute.name} must be from 1 to 64, got {value!r}"
        )


def _check_ttl(_inst: object, attribute: Any, value: float) -> None:
    # SigV4 presigned URLs live at most 7 days.
    if not 1 <= value <= 7 * 86400:
        raise InvalidSettingError(
            attribute.name,
            f"storage.{attribute.name} must be from 1 s to 7 days, got {value!r}",
        )


#: An orphan younger than this is never swept, whatever the setting says: uploads
#: record their files only once the whole body arrived.
MIN_ORPHAN_AGE = 60.0


def _check_sweep_interval(_inst: object, attribute: Any, value: float) -> None:
    if value != 0 and value < 1:
        raise InvalidSettingError(
            attribute.name,
            f"storage.{attribute.name} must be 0 (no sweeping) or at least 1 s, got {value!r}",
        )


def _check_orphan_age(_inst: object, attribute: Any, value: float) -> None:
    if value < MIN_ORPHAN_AGE:
        raise InvalidSettingError(
            attribute.name,
            f"storage.{attribute.name} must be at least {MIN_ORPHAN_AGE:g} s (longer than "
            f"any upload takes), got {value!r}",
        )


@frozen
class StorageSettings:
    """Where uploaded files are kept: a local directory, or an S3-compatible bucket."""

    backend: Literal["local", "s3"] = "local"
    """``local``: a directory (``local_path``); ``s3``: a bucket (needs ``pip install
    'installsure[s3]'``)."""
    local_path: str | None = None
    """None: ``<data_dir>/files``."""
    threads: int = field(default=8, validator=_check_threads)
    """Threads that write, read, hash and delete stored bytes (never the reactor's)."""
    s3_bucket: str | None = None
    s3_endpoint: HttpUrl | None = None
    """None: AWS itself; set it for MinIO, Ceph, R2 and the like."""
    s3_region: str | None = None
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_prefix: str = ""
    """Prepended to every object key, e.g. ``"installsure/"`` to share a bucket."""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """``path`` for servers without virtual-host buckets (MinIO on an IP address)."""
    s3_part_size: int = field(default=8 * 1024 * 1024, validator=_check_part_size)
    """Uploads go to S3 in parts of this many bytes; one such part is held in memory
    per upload in progress."""
    s3_presigned_downloads: bool = False
    """Answer a download with a 302 to a short-lived presigned URL of the bucket, so the
    bytes do not pass through this server."""
    s3_presign_ttl: Seconds = field(default=Seconds(300.0), validator=_check_ttl)
    """How long such a presigned URL works."""
    orphan_sweep_interval: Seconds = field(default=Seconds(3600.0),
                                           validator=_check_sweep_interval)
    """How often to look for stored objects that no file record names (left by a crash
    between storing an upload and recording it, or by a delete whose bytes could not be
    removed) and delete them; 0 turns the sweep off. Processes of the roles that run
    jobs (``all``, ``worker``) sweep."""
    orphan_min_age: Seconds = field(default=Seconds(3600.0), validator=_check_orphan_age)
    """Objects written less than this long ago are never swept: an upload stores its
    first files before it records them all. At least 60 s; keep it longer than your
    longest upload (with S3, a large object's age counts from the start of its upload)."""
