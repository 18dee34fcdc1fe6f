"""Authentication happens from the headers, before any body is read; failures are limited."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.app.helpers import assert_problem
from tests.app.processes import ServeProcess, rapport_env, run_cli
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
    # A valid key still works from that address.
    with server.client(good) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 200
    # No key at all counts as a failure too.
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 429


ADMIN = "admin-" + "s" * 40


def test_an_address_over_its_failures_still_gets_in_with_a_valid_key_or_the_admin_key(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # No key cache: each valid request is looked up like a first one (a key not used in
    # the last second was refused like an attacker's, and so was the admin key).
    settings = make_settings(
        database_url,
        tmp_path / "data",
        auth_failures_per_minute=1,
        auth_failures_burst=3,
        key_cache_s=0,
        admin_key=ADMIN,
    )
    server: LiveServer = start_server(settings)
    good = server.new_key("acme")
    bad = {"Authorization": "Bearer rk_000000000000_" + "x" * 43}
    with httpx.Client(base_url=server.url) as client:
        failures = [client.get("/v1/users/a/concepts", headers=bad).status_code for _ in range(4)]
        valid = [
            client.get("/v1/users/a/concepts", headers={"Authorization": f"Bearer {good}"})
            for _ in range(3)
        ]
        admin = client.get("/v1/admin/tenants", headers={"Authorization": f"Bearer {ADMIN}"})
        wrong_admin = client.get("/v1/admin/tenants", headers=bad)
        still = client.get("/v1/users/a/concepts", headers=bad)
    assert failures == [401, 401, 401, 429]
    assert [answer.status_code for answer in valid] == [200, 200, 200]
    assert admin.status_code == 200, admin.text
    assert wrong_admin.status_code == 429
    assert still.status_code == 429  # the failures stay limited


def test_a_client_cannot_pick_its_address_with_x_forwarded_for(tmp_path: Path) -> None:
    # Before: uvicorn trusted X-Forwarded-For from 127.0.0.1 by default, so a fresh address
    # per request meant an endless budget of failures (25 of 25 answered 401).
    env = rapport_env(
        tmp_path / "data", RAPPORT_AUTH_FAILURES_PER_MINUTE="1", RAPPORT_AUTH_FAILURES_BURST="3"
    )
    assert run_cli(["db", "upgrade"], env).returncode == 0
    server = ServeProcess(env, tmp_path / "serve.log").wait_ready()
    bad = {"Authorization": "Bearer rk_000000000000_" + "x" * 43}
    try:
        with httpx.Client(base_url=server.url, headers=bad) as client:
            statuses = [
                client.get(
                    "/v1/users/m/concepts", headers={"X-Forwarded-For": f"198.51.100.{n}"}
                ).status_code
                for n in range(5)
            ]
    finally:
        server.stop()
    assert statuses == [401, 401, 401, 429, 429]
