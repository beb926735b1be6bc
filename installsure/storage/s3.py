"""Stored files in an S3-compatible bucket, through boto3 (the ``s3`` extra).

Every call blocks and runs on the storage pool (boto3 clients are thread-safe; one is
shared). An upload is held in memory one part at a time: a file smaller than
``storage.s3_part_size`` is one PUT when it is complete, a larger one a multipart upload
that sends each part as soon as it is full and is aborted when the upload fails, so the
bucket keeps no orphaned parts. Downloads read ranges with ``GET`` and ``Range``;
``list_objects`` pages through ``ListObjectsV2`` under the prefix (the orphan sweeper).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

from installsure.storage.interface import (
    ObjectMissingError,
    StorageError,
    StoredObject,
    check_key,
    is_key,
)
from installsure.storage.settings import StorageSettings

#: DeleteObjects takes at most this many keys per call, ListObjectsV2 answers as many.
_DELETE_BATCH = 1000
_LIST_PAGE = 1000
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "")) or None
    return None


@contextmanager
def _translated(action: str, key: str | None = None) -> Iterator[None]:
    """boto3's exceptions as :class:`StorageError` (or ObjectMissingError), naming the call."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as e:
        code = _error_code(e)
        if key is not None and code in _MISSING:
            raise ObjectMissingError(f"no stored object {key}") from None
        raise StorageError(f"S3 {action} failed: {code or e}") from None
    except BotoCoreError as e:
        raise StorageError(f"S3 {action} failed: {e}") from None


class S3Writer:
    """One object on its way into the bucket (see the module docstring)."""

    def __init__(self, bucket: S3Bucket, key: str) -> None:
        self._bucket = bucket
        self._key = bucket.object_key(key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise StorageError("write after commit or abort")
        self._buffer += data
        size = self._bucket.part_size
        while len(self._buffer) >= size:
            part = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._send_part(part)

    def _send_part(self, part: bytes) -> None:
        client, bucket = self._bucket.client, self._bucket.bucket
        if self._upload_id is None:
            with _translated("CreateMultipartUpload"):
                started = client.create_multipart_upload(Bucket=bucket, Key=self._key)
            self._upload_id = str(started["UploadId"])
        number = len(self._parts) + 1
        try:
            with _translated("UploadPart"):
                sent = client.upload_part(Bucket=bucket, Key=self._key, PartNumber=number,
                                          UploadId=self._upload_id, Body=part)
        except StorageError:
            self.abort()
            raise
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    def commit(self) -> None:
        if self._done:
            raise StorageError("commit after commit or abort")
        client, bucket = self._bucket.client, self._bucket.bucket
        try:
            if self._upload_id is None:
                with _translated("PutObject"):
                    client.put_object(Bucket=bucket, Key=self._key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    self._send_part(bytes(self._buffer))
                with _translated("CompleteMultipartUpload"):
                    client.complete_multipart_upload(
                        Bucket=bucket, Key=self._key, UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts},
                    )
        except StorageError:
            self.abort()
            raise
        self._done = True
        self._buffer = bytearray()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        upload, self._upload_id = self._upload_id, None
        if upload is not None:
            with _translated("AbortMultipartUpload"):
                self._bucket.client.abort_multipart_upload(
                    Bucket=self._bucket.bucket, Key=self._key, UploadId=upload)


class S3Reader:
    """The body of one ranged GET."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int) -> bytes:
        with _translated("GetObject (reading)"):
            return bytes(self._body.read(size))

    def close(self) -> None:
        self._body.close()


class S3Bucket:
    """The :class:`~installsure.storage.interface.StorageBackend` of an S3 bucket."""

    name = "s3"

    def __init__(self, settings: StorageSettings) -> None:
        if not settings.s3_bucket:
            raise StorageError("the s3 storage backend needs storage.s3_bucket")
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.part_size = settings.s3_part_size
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StorageError(
                "storage.backend = 's3' needs boto3: pip install 'installsure[s3]'"
            ) from None
        s = self.settings
        config = Config(
            s3={"addressing_style": s.s3_addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, s.threads),
        )
        # A session of our own: boto3's default session is not safe across threads.
        return boto3.session.Session().client(
            "s3", endpoint_url=s.s3_endpoint, region_name=s.s3_region,
            aws_access_key_id=s.s3_access_key, aws_secret_access_key=s.s3_secret_key,
            config=config,
        )

    def object_key(self, key: str) -> str:
        return self.settings.s3_prefix + check_key(key)

    def prepare(self) -> None:
        with _translated(f"HeadBucket {self.bucket!r}"):
            self.client.head_bucket(Bucket=self.bucket)

    def create(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    def open(self, key: str, start: int = 0, end: int | None = None) -> S3Reader:
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end}"
        with _translated("GetObject", key):
            answer = self.client.get_object(**arguments)
        return S3Reader(answer["Body"])

    def size(self, key: str) -> int | None:
        try:
            with _translated("HeadObject", key):
                answer = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ObjectMissingError:
            return None
        return int(answer["ContentLength"])

    def delete(self, keys: list[str]) -> None:
        names = [self.object_key(key) for key in keys]
        for start in range(0, len(names), _DELETE_BATCH):
            batch = [{"Key": name} for name in names[start:start + _DELETE_BATCH]]
            with _translated("DeleteObjects"):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 DeleteObjects refused {len(errors)} keys, e.g. {first.get('Key')}: "
                    f"{first.get('Code')}"
                )

    def list_objects(self) -> Generator[StoredObject, None, None]:
        """The objects under ``storage.s3_prefix``, a page of ListObjectsV2 at a time."""
        prefix = self.settings.s3_prefix
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": _LIST_PAGE})
        with _translated("ListObjectsV2"):
            for page in pages:
                for item in page.get("Contents") or ():
                    key = str(item["Key"])[len(prefix):]
                    if is_key(key):
                        yield StoredObject(key, item["LastModified"].timestamp(),
                                           int(item["Size"]))

    def presigned_url(self, key: str, ttl: float, filename_header: str,
                      content_type: str) -> str | None:
        with _translated("presigning GetObject"):
            return str(self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket, "Key": self.object_key(key),
                    "ResponseContentDisposition": filename_header,
                    "ResponseContentType": content_type,
                },
                ExpiresIn=int(ttl),
            ))

    def health(self) -> dict[str, object]:
        self.prepare()
        return {"backend": self.name, "bucket": self.bucket}
