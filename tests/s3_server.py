"""A real S3 API server on loopback: moto's server mode, in a thread of the test process.

MinIO, SeaweedFS and Garage cannot be installed on the build machines; moto's
server speaks the S3 HTTP API (signatures, listings, multi-object delete,
errors) and is what s3fs and pandas test against. Every test gets its own
bucket, so tests share one server without seeing each other's objects.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

ACCESS_KEY_ID = "AKIDRAPPORTTEST"
SECRET_ACCESS_KEY = "rapport-test-secret-do-not-log"  # a test credential
REGION = "us-east-1"


class S3Server:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self) -> Any:
        return s3_client(self.endpoint)

    def new_bucket(self) -> str:
        name = f"rapport-test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(
        self, bucket: str, prefix: str = "photos", endpoint: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Settings (as Settings fields) of a store in ``bucket`` on this server."""
        return {
            "blob_store": f"s3://{bucket}/{prefix}",
            "s3_endpoint_url": endpoint or self.endpoint,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
            "s3_path_style": True,
            # Short, so that the fault tests' retries end quickly.
            "s3_max_attempts": 2,
            "s3_timeout_s": 2.0,
        } | extra

    def env(self, bucket: str, prefix: str = "photos", **extra: Any) -> dict[str, str]:
        """The same as RAPPORT_* environment variables, for child processes."""
        return as_env(self.settings(bucket, prefix, **extra))

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def backdate(self, bucket: str, key: str, age_s: float) -> None:
        backdate(bucket, key, age_s)

    @contextmanager
    def checking_credentials(self) -> Iterator[None]:
        """Refuse unknown access keys (moto accepts any by default) while inside."""
        httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
        try:
            yield
        finally:
            httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()


def as_env(settings: dict[str, Any]) -> dict[str, str]:
    """Settings fields as the RAPPORT_* environment variables of a child process."""
    return {f"RAPPORT_{name.upper()}": str(value) for name, value in settings.items()}


def backdate(bucket: str, key: str, age_s: float) -> None:
    """Make an object ``age_s`` seconds old (S3 sets LastModified itself; os.utime's twin).

    The server runs in this process, so its objects can be reached directly.
    """
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys[key]
    stored.last_modified = stored.last_modified - dt.timedelta(seconds=age_s)


def put_raw(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    """Write an object the way only something else than rapport would (any key)."""
    s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=data)


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
