"""Settings of uploads (config section ``upload``).

How many uploads one user may start is a rate limit like the others:
``http.rate_limits.upload`` (per user, across every process).
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from installsure.config.values import InvalidSettingError

MIB = 1024 * 1024


def _check_at_least_one(_inst: object, attribute: Any, value: int) -> None:
    if value < 1:
        raise InvalidSettingError(
            attribute.name, f"upload.{attribute.name} must be at least 1, got {value!r}"
        )


@frozen
class UploadSettings:
    """Limits of ``POST /api/files/upload``, enforced while the body arrives."""

    max_size: int = field(default=100 * MIB, validator=_check_at_least_one)
    """Largest file in bytes; the upload is answered 413 as soon as a file passes it."""
    max_files: int = field(default=10, validator=_check_at_least_one)
    """Most files in one upload; the next file part is answered 413."""

    @property
    def max_body(self) -> int:
        """The largest request body an upload within both limits can need: the files,
        plus room for each part's headers and the form's other fields."""
        return self.max_files * (self.max_size + 64 * 1024) + 64 * 1024
