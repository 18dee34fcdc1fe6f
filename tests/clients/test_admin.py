"""Tenants and keys through RapportAdmin and AsyncRapportAdmin, against a served rapport."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rapport_client as rc

from tests import factories
from tests.clients.driver import Driver, Flavour, drive
from tests.conftest import LiveServer, make_settings

ADMIN = "an-admin-key-for-the-client-tests-0123456789"


@pytest.fixture
def admin_server(start_server: Any, sqlite_url: str, tmp_path: Path) -> LiveServer:
    settings = make_settings(sqlite_url, tmp_path / "data", admin_key=ADMIN, key_cache_s=0)
    server: LiveServer = start_server(settings)
    return server


def run_admin(flavour: Flavour, url: str, key: str, scenario: Any) -> Any:
    async def main() -> Any:
        if flavour == "sync":
            with rc.RapportAdmin(url, key) as admin:
                return await scenario(Driver(admin))
        async with rc.AsyncRapportAdmin(url, key) as admin:
            return await scenario(Driver(admin))

    return asyncio.run(main())


def test_a_tenant_and_its_key_made_by_the_admin_client_serve_the_app(
    admin_server: LiveServer, flavour: Flavour
) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)

    async def make(admin: Driver) -> rc.NewApiKey:
        tenant = await admin.create_tenant("shop")
        assert tenant.name == "shop"
        with pytest.raises(rc.Conflict):
            await admin.create_tenant("shop")
        assert "shop" in [t.name for t in await admin.list_tenants()]
        new: rc.NewApiKey = await admin.create_key("shop", expires_at=expires)
        assert new.key.startswith("rk_") and new.prefix in new.key
        assert new.expires_at is not None and abs(new.expires_at - expires) < timedelta(seconds=1)
        [listed] = await admin.list_keys("shop")
        assert (listed.prefix, listed.revoked_at) == (new.prefix, None)
        with pytest.raises(rc.NotFound):
            await admin.list_keys("no-such-tenant")
        return new

    new = run_admin(flavour, admin_server.url, ADMIN, make)

    async def use(api: Driver) -> None:
        await api.create_concept("alice", "<bo>", [factories.photo("dog", 0)] * 2)

    drive(flavour, admin_server.url, new.key, use)

    async def check(admin: Driver) -> None:
        usage = await admin.tenant_usage("shop")
        assert (usage.users, usage.concepts, usage.photos) == (1, 1, 2) and usage.bytes > 0
        await admin.revoke_key("shop", new.prefix)
        [revoked] = await admin.list_keys("shop")
        assert revoked.revoked_at is not None

    run_admin(flavour, admin_server.url, ADMIN, check)

    async def refused(api: Driver) -> None:
        with pytest.raises(rc.Unauthorized):
            await api.get_user("alice")

    drive(flavour, admin_server.url, new.key, refused)


def test_a_wrong_admin_key_is_unauthorized(admin_server: LiveServer, flavour: Flavour) -> None:
    async def scenario(admin: Driver) -> None:
        with pytest.raises(rc.Unauthorized) as refused:
            await admin.list_tenants()
        assert refused.value.status == 401

    run_admin(flavour, admin_server.url, "not-the-admin-key-" + "x" * 30, scenario)
