"""S3 faults: a wrong setting stops the start; a store that fails later answers 503, stores
nothing by halves, and turns /readyz to 503; transient throttling is retried."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from app.domain.errors import BlobStoreUnavailable
from app.usecases.doctor import Storage, check, repair
from tests import factories
from tests.app.helpers import assert_problem, register, register_subject, stored
from tests.app.processes import RAPPORT, rapport_env
from tests.conftest import LiveServer, make_settings
from tests.s3_server import SECRET_ACCESS_KEY, S3Server, SlowDownProxy, as_env
from tests.tcp_proxy import TcpProxy, running_proxy

PHOTOS = [factories.photo("dog", i) for i in range(3)]


def test_rapport_serve_refuses_to_start_on_a_wrong_bucket(
    s3_server: S3Server, sqlite_url: str, tmp_path: Path
) -> None:
    settings = as_env(s3_server.settings("no-such-bucket"))
    env = rapport_env(tmp_path / "data", RAPPORT_DATABASE_URL=sqlite_url, **settings)
    result = subprocess.run(
        [*RAPPORT, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: RAPPORT_BLOB_STORE: no bucket 'no-such-bucket' at {s3_server.endpoint}"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET_ACCESS_KEY not in result.stderr + result.stdout


@pytest.mark.parametrize("fault", ["bucket", "credentials", "endpoint"])
def test_a_wrong_store_setting_stops_the_start_naming_the_setting(
    fault: str, s3_server: S3Server, start_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    bucket = "no-such-bucket" if fault == "bucket" else s3_server.new_bucket()
    endpoint = f"http://127.0.0.1:{_closed_port()}" if fault == "endpoint" else None
    settings = make_settings(
        sqlite_url, tmp_path / "data", **s3_server.settings(bucket, endpoint=endpoint)
    )
    setting = {
        "bucket": "RAPPORT_BLOB_STORE: no bucket 'no-such-bucket'",
        "credentials": "RAPPORT_S3_ACCESS_KEY_ID / RAPPORT_S3_SECRET_ACCESS_KEY: the S3 store",
        "endpoint": "RAPPORT_S3_ENDPOINT_URL: cannot reach",
    }[fault]
    checking = s3_server.checking_credentials() if fault == "credentials" else nullcontext()
    with checking, pytest.raises(BlobStoreUnavailable) as raised:
        start_server(settings)
    assert raised.value.detail.startswith(setting)
    assert "\n" not in raised.value.detail and SECRET_ACCESS_KEY not in raised.value.detail


def test_credentials_never_reach_the_logs(
    s3_server: S3Server, start_server: Any, sqlite_url: str, tmp_path: Path, caplog: Any
) -> None:
    settings = make_settings(sqlite_url, tmp_path / "data", **s3_server.settings("no-bucket"))
    with caplog.at_level(logging.DEBUG), pytest.raises(BlobStoreUnavailable):
        start_server(settings)
    assert caplog.records  # botocore's DEBUG lines were captured, the secret is in none
    assert not any(SECRET_ACCESS_KEY in record.getMessage() for record in caplog.records)
    assert SECRET_ACCESS_KEY not in repr(settings) and SECRET_ACCESS_KEY not in str(settings)


@pytest.fixture
def proxied(
    s3_server: S3Server, start_server: Any, sqlite_url: str, tmp_path: Path
) -> Iterator[tuple[LiveServer, TcpProxy]]:
    """A server whose S3 traffic goes through a TCP proxy the test can cut."""
    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    with running_proxy(host, int(port)) as proxy:
        store = s3_server.settings(
            s3_server.new_bucket(), endpoint=f"http://127.0.0.1:{proxy.port}"
        )
        yield start_server(make_settings(sqlite_url, tmp_path / "data", **store)), proxy


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_a_store_that_goes_down_answers_503_and_keeps_nothing(
    proxied: tuple[LiveServer, TcpProxy], mode: Any
) -> None:
    server, proxy = proxied
    api = server.client(server.new_key("acme"))
    dog = register_subject(api, "alice", "dog")
    photo_url = f"/v1/users/alice/concepts/{dog['id']}/images/{dog['images'][0]['id']}"
    before = stored(server.services)

    proxy.cut(mode)
    ready = api.get("/readyz")
    assert ready.status_code == 503 and ready.json()["photo_store"] == "unreachable"
    started = time.monotonic()
    body = assert_problem(register(api, "alice", "cat", PHOTOS), 503)
    # Two tries of at most 2 s each (the tests' settings), and a backoff.
    assert time.monotonic() - started < 10
    assert body["title"] == "Photo store unavailable" and "127.0.0.1" not in body["detail"]
    assert assert_problem(api.get(photo_url), 503)["title"] == "Photo store unavailable"
    proxy.restore()
    assert api.get("/readyz").status_code == 200
    assert stored(server.services) == before  # the failed registration left nothing
    assert api.get(photo_url).content == factories.photo("dog", 0)

    # Deletions commit without the store: their photos wait, unreferenced, for the doctor.
    assert register(api, "bob", "cat", [factories.photo("cat", 0)]).status_code == 201
    proxy.cut(mode)
    assert api.delete(f"/v1/users/alice/concepts/{dog['id']}").status_code == 204
    assert api.delete("/v1/users/bob").status_code == 204
    proxy.restore()
    assert api.get("/v1/users/alice/concepts").json()["items"] == []
    assert api.get("/v1/users/bob/concepts").json()["items"] == []
    assert stored(server.services) == {"concepts": 0, "images": 0, "vectors": 0, "blobs": 4}
    assert len(check(Storage.of(server.services), grace_s=0).orphan_blobs) == 4
    assert repair(Storage.of(server.services), grace_s=0).problems == []
    assert stored(server.services)["blobs"] == 0
    assert register(api, "alice", "cat", PHOTOS).status_code == 201


@pytest.fixture
def throttled(
    s3_server: S3Server, start_server: Any, sqlite_url: str, tmp_path: Path
) -> Iterator[tuple[LiveServer, SlowDownProxy]]:
    proxy = SlowDownProxy(s3_server.endpoint).start()
    store = s3_server.settings(s3_server.new_bucket(), endpoint=proxy.endpoint, s3_max_attempts=3)
    try:
        yield start_server(make_settings(sqlite_url, tmp_path / "data", **store)), proxy
    finally:
        proxy.stop()


def test_slow_down_is_retried_with_backoff(throttled: tuple[LiveServer, SlowDownProxy]) -> None:
    server, proxy = throttled
    api = server.client(server.new_key("acme"))
    proxy.slow_down(2, ("PUT",))  # fewer than the 3 tries of one request
    dog = register_subject(api, "alice", "dog")
    assert proxy.served == 2
    proxy.slow_down(2, ("GET",))
    photo = api.get(f"/v1/users/alice/concepts/{dog['id']}/images/{dog['images'][1]['id']}")
    assert photo.status_code == 200 and photo.content == factories.photo("dog", 1)
    assert proxy.served == 4


def test_persistent_slow_down_mid_upload_answers_503_with_nothing_half_stored(
    throttled: tuple[LiveServer, SlowDownProxy], s3_server: S3Server
) -> None:
    server, proxy = throttled
    api = server.client(server.new_key("acme"))
    register_subject(api, "alice", "dog")
    before = stored(server.services)
    # The first photo is stored; the second is throttled on each of its 3 tries.
    proxy.slow_down(3, ("PUT",), after=1)
    response = register(api, "alice", "cat", PHOTOS)
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "2"
    assert proxy.served == 3
    # No concept, image or vector row, and the blob written before the failure is gone.
    assert stored(server.services) == before


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
