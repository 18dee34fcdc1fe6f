"""Authentication happens from the headers, before any body is read; failures are limited."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.app.helpers import assert_problem
from tests.app.test_hostile_inputs import raw_request
from tests.conftest import LiveServer, make_settings

MIB = 1024 * 1024


def test_an_anonymous_upload_is_refused_before_its_body_is_read(server: LiveServer) -> None:
    head = (
        "POST /v1/users/alice/concepts HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {45 * MIB}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = raw_request(server, head)  # and not one byte of the 45 MB body
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert elapsed < 1.0


def test_failed_authentications_are_limited_per_address(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url, tmp_path / "data", auth_failures_per_minute=1, auth_failures_burst=3
    )
    server: LiveServer = start_server(settings)
    good = server.new_key("acme")
    with server.client(good) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 200  # now cached
    bad = {"Authorization": "Bearer rk_000000000000_" + "x" * 43}
    with httpx.Client(base_url=server.url, headers=bad) as client:
        statuses = [client.get("/v1/users/alice/concepts").status_code for _ in range(5)]
        blocked = client.get("/v1/users/alice/concepts")
    assert statuses == [401, 401, 401, 429, 429]
    assert_problem(blocked, 429)
    assert int(blocked.headers["retry-after"]) >= 1
    # A key already known good still works from that address.
    with server.client(good) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 200
    # No key at all counts as a failure too.
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 429
