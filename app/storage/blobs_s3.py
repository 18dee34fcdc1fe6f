"""Photo storage in an S3-compatible bucket (AWS S3, SeaweedFS, Garage, Ceph RGW, MinIO).

One object per blob, under ``prefix + key``. A PUT stores an object whole or
not at all, so there are no temp files; the doctor's ages come from
LastModified. botocore retries transient failures (5xx, SlowDown, timeouts,
dropped connections) with exponential backoff and jitter, a bounded number of
times; then the call raises BlobStoreUnavailable (503). Nothing here logs or
raises the credentials: errors name the operation and the S3 error code only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import SecretStr

from app.domain.errors import BlobStoreUnavailable
from app.settings import Settings
from app.settings_rules import s3_bucket_and_prefix
from app.storage.blobs import StoredFile, check_key, is_temporary

logger = logging.getLogger(__name__)

_MISSING = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
_PAGE = 1000  # S3's own maximum of keys per listing and per DeleteObjects


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str  # "" or "some/prefix/"
    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL, or AWS itself
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    path_style: bool = False
    max_attempts: int = 4
    timeout_s: float = 10.0
    max_connections: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Config:
        """The bucket and client options that ``RAPPORT_BLOB_STORE`` and ``RAPPORT_S3_*`` name."""
        assert settings.blob_store is not None
        bucket, prefix = s3_bucket_and_prefix(settings.blob_store)
        return cls(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=_secret(settings.s3_access_key_id),
            secret_access_key=_secret(settings.s3_secret_access_key),
            path_style=settings.s3_path_style,
            max_attempts=settings.s3_max_attempts,
            timeout_s=settings.s3_timeout_s,
            # One connection per worker thread that may read or write a photo at once.
            max_connections=settings.threadpool_size,
        )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class S3BlobStore:
    """Blobs as objects of one bucket, under one prefix. Thread-safe (boto3 clients are)."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        session = boto3.session.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
        )
        self._client = session.client(
            "s3", endpoint_url=config.endpoint_url, config=_client_config(config)
        )
        # Probes (start-up, /readyz) try once: the balancer asks again soon anyway.
        self._probe = session.client(
            "s3", endpoint_url=config.endpoint_url, config=_client_config(config, attempts=1)
        )
        self.endpoint = _without_userinfo(self._client.meta.endpoint_url)
        self.description = f"s3://{config.bucket}/{config.prefix} at {self.endpoint}"

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        response = self._call("get_object", Key=self._key(key), missing=key)
        try:
            return bytes(response["Body"].read())
        except BotoCoreError as error:  # the connection failed mid-body
            raise _unavailable("GetObject", type(error).__name__) from None

    def exists(self, key: str) -> bool:
        return self._head(self._key(key)) is not None

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self._key(key))

    def files(self) -> Iterator[StoredFile]:
        for item in self._list(self.config.prefix):
            name = item["Key"][len(self.config.prefix) :]
            yield StoredFile(
                key=name, mtime=item["LastModified"].timestamp(), temporary=is_temporary(name)
            )

    def mtime(self, name: str) -> float:
        head = self._head(self._name(name))
        return float("inf") if head is None else float(head["LastModified"].timestamp())

    def remove_file(self, name: str) -> None:
        self._call("delete_object", Key=self._name(name))

    def delete_namespace(self, namespace: str) -> None:
        prefix = self._key(namespace) + "/"
        # List the first page, delete it, again until none is left: no continuation token
        # has to survive the deletions, and any number of objects goes.
        while True:
            page = self._call("list_objects_v2", Prefix=prefix, MaxKeys=_PAGE)
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not keys:
                return
            answer = self._call("delete_objects", Delete={"Objects": keys, "Quiet": True})
            if answer.get("Errors"):
                codes = sorted({error.get("Code", "?") for error in answer["Errors"]})
                raise _unavailable("DeleteObjects", ", ".join(codes))

    def check(self) -> None:
        bucket = self.config.bucket
        try:
            self._probe.head_bucket(Bucket=bucket)
        except NoCredentialsError:
            raise BlobStoreUnavailable(
                "RAPPORT_S3_ACCESS_KEY_ID / RAPPORT_S3_SECRET_ACCESS_KEY: no S3 credentials "
                "(set them, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            ) from None
        except ClientError as error:
            code = _code(error)
            if code in _MISSING or code == "NoSuchBucket":
                raise BlobStoreUnavailable(
                    f"RAPPORT_BLOB_STORE: no bucket {bucket!r} at {self.endpoint}"
                ) from None
            if code in _REFUSED:
                raise BlobStoreUnavailable(
                    "RAPPORT_S3_ACCESS_KEY_ID / RAPPORT_S3_SECRET_ACCESS_KEY: the S3 store at "
                    f"{self.endpoint} refused the credentials for bucket {bucket!r} ({code})"
                ) from None
            raise BlobStoreUnavailable(
                f"RAPPORT_S3_ENDPOINT_URL: the S3 store at {self.endpoint} answered {code} "
                f"for bucket {bucket!r}"
            ) from None
        except BotoCoreError as error:
            raise BlobStoreUnavailable(
                f"RAPPORT_S3_ENDPOINT_URL: cannot reach the S3 store at {self.endpoint} "
                f"({type(error).__name__})"
            ) from None

    def close(self) -> None:
        self._client.close()
        self._probe.close()

    def _key(self, key: str) -> str:
        return self.config.prefix + check_key(key)

    def _name(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"invalid file name {name!r}")
        return self.config.prefix + name

    def _head(self, full_key: str) -> dict[str, Any] | None:
        try:
            return self._call("head_object", Key=full_key, missing=full_key)
        except FileNotFoundError:
            return None

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=prefix, MaxKeys=_PAGE, **token)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _call(self, method: str, *, missing: str | None = None, **params: Any) -> Any:
        """One S3 request on the bucket (botocore retries transient failures); map failures."""
        try:
            return getattr(self._client, method)(Bucket=self.config.bucket, **params)
        except ClientError as error:
            code = _code(error)
            if missing is not None and code in _MISSING:
                raise FileNotFoundError(missing) from None
            raise _unavailable(method, code) from None
        except BotoCoreError as error:  # timeouts, refused or dropped connections, no keys
            raise _unavailable(method, type(error).__name__) from None


def _unavailable(operation: str, reason: str) -> BlobStoreUnavailable:
    logger.warning("S3 %s failed: %s", operation, reason)
    return BlobStoreUnavailable("the photo store is unavailable; retry shortly")


def _client_config(config: S3Config, *, attempts: int | None = None) -> Config:
    return Config(
        retries={"mode": "standard", "total_max_attempts": attempts or config.max_attempts},
        connect_timeout=config.timeout_s,
        read_timeout=config.timeout_s,
        max_pool_connections=config.max_connections,
        s3={"addressing_style": "path" if config.path_style else "auto"},
        # Checksums only where S3 requires them: several S3-compatible stores reject
        # the newer default (CRC32 trailers) on PUT.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if not parts.username:
        return url
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.hostname}{port}").geturl()
