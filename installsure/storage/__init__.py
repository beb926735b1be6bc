"""File storage: a local directory (default) or an S3-compatible bucket, behind one
interface (:mod:`~installsure.storage.interface`) and one thread pool
(:class:`~installsure.storage.service.Storage`)."""

from installsure.storage.interface import (
    InvalidKeyError,
    ObjectMissingError,
    ObjectReader,
    ObjectWriter,
    StorageBackend,
    StorageError,
    StoredObject,
    check_key,
)
from installsure.storage.local import LocalDirectory
from installsure.storage.service import Storage, build_backend
from installsure.storage.settings import StorageSettings

__all__ = [
    "InvalidKeyError",
    "LocalDirectory",
    "ObjectMissingError",
    "ObjectReader",
    "ObjectWriter",
    "Storage",
    "StorageBackend",
    "StorageError",
    "StorageSettings",
    "StoredObject",
    "build_backend",
    "check_key",
]
