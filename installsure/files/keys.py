"""Where a file's stored objects are kept: keys made from its id, never from its name.

A file's bytes are under ``<first two characters of its id>/<id>`` (the prefix spreads
a local directory's entries over 256 subdirectories); anything else stored for it (a
thumbnail) goes under the same name with a suffix. :func:`is_file_key` recognises those
shapes: the orphan sweeper deletes nothing else, so objects of other programs sharing a
bucket (or a directory) are never touched.
"""

from __future__ import annotations

import re

_FILE_KEY = re.compile(
    r"(?P<shard>[0-9a-f]{2})/(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{12})(\.[a-z0-9_-]{1,32})*")


def storage_key(file_id: str) -> str:
    """Where a file's bytes are kept."""
    return f"{file_id[:2]}/{file_id}"


def is_file_key(key: str) -> bool:
    """Whether ``key`` is shaped like a key this server stores files under: a file's
    (:func:`storage_key`) or one with a suffix after it (``.thumb.png``)."""
    found = _FILE_KEY.fullmatch(key)
    return found is not None and found["id"].startswith(found["shard"])
