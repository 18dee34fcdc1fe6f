"""A real S3 API server on loopback: moto's server mode, in a thread of the test process.

MinIO, SeaweedFS and Garage cannot be installed on the build machines; moto's
server speaks the S3 HTTP API (signatures, listings, multi-object delete,
errors) and is what s3fs and pandas test against. Every test gets its own
bucket, so tests share one server without seeing each other's objects.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class SlowDownProxy:
    """An HTTP proxy on loopback in front of the S3 server that answers 503 SlowDown on demand.

    ``slow_down(n, methods)`` makes the next ``n`` requests of those methods get
    S3's throttling answer instead of being forwarded; ``served`` counts them.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.served = 0
        self._budget = self._pass = 0
        self._methods: set[str] = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._throttle(self.command):
                    payload = _SLOW_DOWN
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> SlowDownProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def slow_down(
        self, count: int, methods: tuple[str, ...] = ("GET", "PUT", "HEAD"), *, after: int = 0
    ) -> None:
        """Throttle ``count`` requests of ``methods``, once ``after`` of them got through."""
        with self._lock:
            self._budget, self._methods, self._pass = count, set(methods), after

    def _throttle(self, method: str) -> bool:
        with self._lock:
            if self._budget <= 0 or method not in self._methods:
                return False
            if self._pass > 0:
                self._pass -= 1
                return False
            self._budget -= 1
            self.served += 1
            return True


_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>0</RequestId></Error>"
)
