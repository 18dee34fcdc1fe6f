"""Per-tenant abuse limits: request rate (shared through Redis), concepts, photos, bytes."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

from app.storage.repository.tenants import stored_bytes
from retrieval.encoder import Encoder
from tests import factories
from tests.app.helpers import assert_problem, register, stored
from tests.conftest import LiveServer, make_settings


def limited(database_url: str, tmp_path: Path, **extra: Any) -> Any:
    # A bucket refills one token per 100 s: no request of the test's lifetime is refunded.
    values = {
        "rate_limit_rps": 0.01,
        "rate_limit_burst": 3,
        "redis_prefix": f"test-{uuid.uuid4().hex}:",
    }
    return make_settings(database_url, tmp_path / "data", **(values | extra))


def test_rate_limit_is_shared_by_every_process_through_redis(
    redis_url: str, start_server: Any, database_url: str, tmp_path: Path
) -> None:
    settings = limited(database_url, tmp_path, redis_url=redis_url)
    a: LiveServer = start_server(settings)
    b: LiveServer = start_server(settings)
    key, other = a.new_key("acme"), a.new_key("globex")
    on_a, on_b = a.client(key), b.client(key)
    assert [c.get("/v1/users/u/concepts").status_code for c in (on_a, on_b, on_a)] == [200] * 3
    for client in (on_a, on_b):
        refused = client.get("/v1/users/u/concepts")
        assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
    # Another tenant has a bucket of its own.
    assert b.client(other).get("/v1/users/u/concepts").status_code == 200


def test_without_redis_each_process_limits_alone(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    server: LiveServer = start_server(limited(database_url, tmp_path))
    client = server.client(server.new_key("acme"))
    assert [client.get("/v1/users/u/concepts").status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]


def test_a_redis_outage_lets_requests_through(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    server: LiveServer = start_server(
        limited(database_url, tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
    )
    client = server.client(server.new_key("acme"))
    assert [client.get("/v1/users/u/concepts").status_code for _ in range(5)] == [200] * 5


def test_quotas_refuse_clearly_and_store_nothing(
    start_server: Any, database_url: str, tmp_path: Path, encoder: Encoder
) -> None:
    photo_bytes = [factories.photo("dog", i) for i in range(4)]
    dim = encoder.dim

    def cost(photo: bytes) -> int:
        return stored_bytes(size_bytes=len(photo), dims=[dim])

    server: LiveServer = start_server(
        make_settings(
            database_url,
            tmp_path / "data",
            max_concepts_per_user=2,
            max_photos_per_concept=3,
            max_tenant_bytes=sum(map(cost, photo_bytes[:2])) + cost(factories.photo("cat", 0)),
        )
    )
    client = server.client(server.new_key("acme"))
    dog = register(client, "alice", "dog", photo_bytes[:2]).json()
    register(client, "alice", "cat", [factories.photo("cat", 0)])
    before = stored(server.services)
    encoded = photos_encoded(client)

    third = assert_problem(register(client, "alice", "can", [factories.photo("can", 0)]), 409)
    assert "(2)" in third["detail"]
    add = client.post(
        f"/v1/users/alice/concepts/{dog['id']}/images",
        files=[("images", (f"{i}.jpg", p)) for i, p in enumerate(photo_bytes[2:])],
    )
    assert "at most 3 photos" in assert_problem(add, 409)["detail"]
    # Another user of the same app fills the app's storage.
    big = register(client, "bob", "big", [factories.photo("backpack", 0)])
    assert "stores at most" in assert_problem(big, 413)["detail"]
    assert stored(server.services) == before
    # Refused before any photo was decoded or embedded: the encoder did no work for them.
    assert photos_encoded(client) == encoded


def photos_encoded(client: Any) -> float:
    """Photos the server's encoder has embedded so far (from /metrics)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("rapport_encoder_batch_size_sum "):
            return float(line.split()[-1])
    raise AssertionError("no rapport_encoder_batch_size_sum in /metrics")


def test_tiny_photos_are_charged_what_they_store(
    start_server: Any, database_url: str, tmp_path: Path, encoder: Encoder
) -> None:
    tiny = factories.solid_png(1, 1)
    charge = stored_bytes(size_bytes=len(tiny), dims=[encoder.dim])
    assert charge > 50 * len(tiny)  # a block, two rows and a vector for a ~70-byte file
    server: LiveServer = start_server(
        make_settings(database_url, tmp_path / "data", max_tenant_bytes=3 * charge)
    )
    client = server.client(server.new_key("acme"))
    statuses = [
        register(client, f"user{n}", "dot", [factories.solid_png(1, 1, (n, 0, 0))]).status_code
        for n in range(5)
    ]
    assert statuses == [201, 201, 201, 413, 413]
