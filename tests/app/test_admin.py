"""Tenant and key management with the admin key; the admin key never reaches user data."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.helpers import assert_problem, register_subject
from tests.conftest import LiveServer, make_settings

ADMIN = "admin-" + "s" * 40


@pytest.fixture
def admin_server(start_server: Any, database_url: str, tmp_path: Path) -> LiveServer:
    return start_server(make_settings(database_url, tmp_path / "data", admin_key=ADMIN))  # type: ignore[no-any-return]


def test_tenants_and_keys_over_http(admin_server: LiveServer) -> None:
    admin = admin_server.client(ADMIN)
    assert admin.post("/v1/admin/tenants", json={"name": "acme"}).status_code == 201
    assert_problem(admin.post("/v1/admin/tenants", json={"name": "acme"}), 409)
    assert [t["name"] for t in admin.get("/v1/admin/tenants").json()] == ["acme"]
    created = admin.post("/v1/admin/tenants/acme/keys", json={})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("rk_") and created.json()["prefix"] in key
    app_client = admin_server.client(key)
    register_subject(app_client, "alice", "dog")
    listed = admin.get("/v1/admin/tenants/acme/keys").json()
    assert [k["prefix"] for k in listed] == [created.json()["prefix"]]
    assert key not in str(listed)
    assert admin.delete(f"/v1/admin/tenants/acme/keys/{listed[0]['prefix']}").status_code == 204
    assert_problem(app_client.get("/v1/users/alice/concepts"), 401)
    assert_problem(admin.delete(f"/v1/admin/tenants/acme/keys/{listed[0]['prefix']}"), 404)
    assert_problem(admin.post("/v1/admin/tenants/nobody/keys", json={}), 404)


def test_the_admin_key_is_not_a_tenant_key(admin_server: LiveServer) -> None:
    tenant_key = admin_server.new_key("acme")
    register_subject(admin_server.client(tenant_key), "alice", "dog")
    admin = admin_server.client(ADMIN)
    for method, path in (
        ("GET", "/v1/users/alice/concepts"),
        ("POST", "/v1/users/alice/retrieve"),
        ("DELETE", "/v1/users/alice"),
    ):
        assert_problem(admin.request(method, path), 401)
    # And a tenant key is not an admin key.
    assert_problem(admin_server.client(tenant_key).get("/v1/admin/tenants"), 401)
    assert_problem(admin_server.client().get("/v1/admin/tenants"), 401)


def test_without_an_admin_key_the_admin_api_does_not_exist(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/v1/admin/tenants", headers={"Authorization": "Bearer anything"})
    assert_problem(response, 404)


def test_keys_expire(admin_server: LiveServer) -> None:
    admin = admin_server.client(ADMIN)
    admin.post("/v1/admin/tenants", json={"name": "acme"})
    later = datetime.now(UTC) + timedelta(days=1)
    long = admin.post("/v1/admin/tenants/acme/keys", json={"expires_at": later.isoformat()}).json()
    expiry = datetime.now(UTC) + timedelta(seconds=1)
    short = admin.post("/v1/admin/tenants/acme/keys", json={"expires_at": expiry.isoformat()})
    with admin_server.client(short.json()["key"]) as client:
        assert client.get("/v1/users/alice/concepts").status_code == 200
        deadline = time.monotonic() + 10
        while (answer := client.get("/v1/users/alice/concepts")).status_code == 200:
            assert time.monotonic() < deadline, "the key outlived its expiry"
            time.sleep(0.05)  # polling, under the app's rate limit
        assert datetime.now(UTC) >= expiry
        assert_problem(answer, 401)
    assert admin_server.client(long["key"]).get("/v1/users/alice/concepts").status_code == 200
    assert long["expires_at"] is not None
