"""Stored files in a local directory (the default: ``<data_dir>/files``).

An object is written to a temporary file under ``.partial/``, flushed to disk
(``fsync``) and renamed into place in one step, and its directory is synced too: a
crash leaves either the whole object or none of it under its key, never a prefix.
Partial files older than a day (a crash in the middle of an upload) are removed when
the backend starts; younger ones may belong to another process sharing the directory.
``list_objects`` walks the directory (without ``.partial/``) for the orphan sweeper.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import BinaryIO

from installsure.storage.interface import (
    KEY_SEGMENT,
    MAX_KEY_SEGMENTS,
    ObjectMissingError,
    StorageError,
    StoredObject,
    check_key,
    is_key,
)

PARTIAL_DIR = ".partial"
STALE_PARTIAL_SECONDS = 86400.0


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_directory(path: Path, root: Path) -> None:
    """Create ``path`` (under ``root``) and the directories above it, syncing each
    parent so the new entries survive a crash."""
    missing: list[Path] = []
    current = path
    while current != root and not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_directory(directory.parent)


class LocalWriter:
    """One object being written to ``.partial/`` (see the module docstring)."""

    def __init__(self, backend: LocalDirectory, key: str) -> None:
        self._backend = backend
        self._final = backend.path_of(key)
        self._temporary = backend.partial / f"{uuid.uuid4().hex}.part"
        try:
            self._file: BinaryIO | None = self._temporary.open("xb")
        except FileNotFoundError:
            # Before prepare() ran (it runs on the pool as the service starts, and may
            # come after the first upload), or the directory was removed since.
            backend.partial.mkdir(parents=True, exist_ok=True)
            self._file = self._temporary.open("xb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._file is None:
            raise StorageError("write after commit or abort")
        self._file.write(data)

    def commit(self) -> None:
        stream, self._file = self._file, None
        if stream is None:
            raise StorageError("commit after commit or abort")
        try:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            _ensure_directory(self._final.parent, self._backend.root)
            self._temporary.replace(self._final)
            _fsync_directory(self._final.parent)
        except BaseException:
            stream.close()
            self._temporary.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        stream, self._file = self._file, None
        if stream is not None:
            stream.close()
        self._temporary.unlink(missing_ok=True)


class LocalReader:
    """A byte range of a stored file."""

    def __init__(self, path: Path, start: int, end: int | None) -> None:
        try:
            self._file: BinaryIO = path.open("rb")
        except FileNotFoundError:
            raise ObjectMissingError(f"no stored object at {path.name}") from None
        self._file.seek(start)
        self._left = None if end is None else end - start + 1

    def read(self, size: int) -> bytes:
        if self._left is not None:
            size = min(size, self._left)
            if size <= 0:
                return b""
        data = self._file.read(size)
        if self._left is not None:
            self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class LocalDirectory:
    """The :class:`~installsure.storage.interface.StorageBackend` of a directory."""

    name = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self.partial = self.root / PARTIAL_DIR

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def prepare(self) -> None:
        try:
            self.partial.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot create the file storage directory {self.root}: {e.strerror}; "
                "create it writable for this user or set storage.local_path"
            ) from None
        cutoff = time.time() - STALE_PARTIAL_SECONDS
        for leftover in self.partial.glob("*.part"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except FileNotFoundError:
                continue

    def create(self, key: str) -> LocalWriter:
        return LocalWriter(self, key)

    def open(self, key: str, start: int = 0, end: int | None = None) -> LocalReader:
        return LocalReader(self.path_of(key), start, end)

    def size(self, key: str) -> int | None:
        try:
            return self.path_of(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.path_of(key).unlink(missing_ok=True)

    def list_objects(self) -> Generator[StoredObject, None, None]:
        yield from self._walk(self.root, "", 1)

    def _walk(self, directory: Path, prefix: str,
              depth: int) -> Generator[StoredObject, None, None]:
        """The objects under ``directory`` (key ``prefix``, ``depth`` segments deep)."""
        try:
            entries = os.scandir(directory)
        except FileNotFoundError:  # removed while we walked (or never made)
            return
        with entries:
            for entry in entries:
                key = prefix + entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        # .partial/ holds uploads in progress, and is no key segment.
                        if KEY_SEGMENT.fullmatch(entry.name) and depth < MAX_KEY_SEGMENTS:
                            yield from self._walk(Path(entry.path), key + "/", depth + 1)
                    elif entry.is_file(follow_symlinks=False) and is_key(key):
                        facts = entry.stat(follow_symlinks=False)
                        yield StoredObject(key, facts.st_mtime, facts.st_size)
                except FileNotFoundError:  # deleted while we walked
                    continue

    def presigned_url(self, key: str, ttl: float, filename_header: str,
                      content_type: str) -> str | None:
        return None

    def health(self) -> dict[str, object]:
        probe = self.partial / f"health-{uuid.uuid4().hex}.part"
        probe.write_bytes(b"ok")
        probe.unlink()
        usage = shutil.disk_usage(self.root)
        return {"backend": self.name, "freeBytes": usage.free, "totalBytes": usage.total}
