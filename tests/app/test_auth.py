from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.security.keys import revoke_key
from tests.app.helpers import assert_problem
from tests.conftest import LiveServer, make_settings


def test_every_v1_request_needs_a_valid_key(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    # Twenty bad keys from one address on purpose; test_auth_gate limits them.
    server = start_server(
        make_settings(database_url, tmp_path / "data", auth_failures_per_minute=0)
    )
    key = server.new_key("acme")
    routes = [
        ("GET", "/v1/users/alice/concepts"),
        ("POST", "/v1/users/alice/retrieve"),
        ("DELETE", "/v1/users/alice"),
        ("GET", "/v1/users/alice/concepts/x/images/y"),
    ]
    for headers in (
        {},
        {"Authorization": key},
        {"Authorization": "Bearer rk_000000000000_" + "x" * 43},
        {"Authorization": "Bearer " + key[:-1] + ("A" if key[-1] != "A" else "B")},
        {"Authorization": "Basic " + key},
    ):
        with httpx.Client(base_url=server.url, headers=headers) as client:
            for method, path in routes:
                response = client.request(method, path)
                assert_problem(response, 401)
                assert response.headers["www-authenticate"] == "Bearer"
    with server.client(key) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 200


def revoke_elsewhere(server: LiveServer, key: str) -> None:
    """Revoke as another process would (``rapport keys revoke``): in the database only."""
    with server.services.sessions() as session:
        assert revoke_key(session=session, key_or_prefix=key)
        session.commit()


@pytest.mark.parametrize(("key_cache_s", "status_after"), [(60, 200), (0, 401)])
def test_a_key_revoked_elsewhere_is_trusted_at_most_key_cache_s(
    start_server: Any, database_url: str, tmp_path: Path, key_cache_s: float, status_after: int
) -> None:
    server = start_server(make_settings(database_url, tmp_path / "a", key_cache_s=key_cache_s))
    key = server.new_key("acme")
    with server.client(key) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 200
        revoke_elsewhere(server, key)
        # With a cache this process has not asked the database again; without, it has.
        assert client.get("/v1/users/alice/concepts").status_code == status_after
        # Once the cache no longer vouches (its time passed, or a restart), it asks.
        server.services.key_cache.ttl_s = 0
        assert_problem(client.get("/v1/users/alice/concepts"), 401)


def test_keys_are_stored_only_as_hashes(server: object) -> None:
    from sqlalchemy import select

    from app.storage.db.models import ApiKey

    key = server.new_key("acme")  # type: ignore[attr-defined]
    with server.services.sessions() as session:  # type: ignore[attr-defined]
        stored_values = [
            value for row in session.scalars(select(ApiKey)) for value in (row.prefix, row.key_hash)
        ]
    assert stored_values
    assert all(key not in value and key.split("_")[-1] not in value for value in stored_values)


def test_hashes_are_keyed_by_the_server_secret(
    start_server: object, database_url: str, tmp_path: object
) -> None:
    from tests.conftest import make_settings

    first = start_server(make_settings(database_url, tmp_path / "a", secret_key="one" * 11))  # type: ignore[operator]
    key = first.new_key("acme")
    assert first.client(key).get("/v1/users/alice/concepts").status_code == 200
    other = start_server(make_settings(database_url, tmp_path / "b", secret_key="two" * 11))  # type: ignore[operator]
    assert_problem(other.client(key).get("/v1/users/alice/concepts"), 401)
