"""Tenant and key management over HTTP, with RAPPORT_ADMIN_KEY (absent: these routes are 404).

The admin key manages tenants and their keys only: it is not a tenant key, so
it can never read or change any user's data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.domain.ids import TENANT_NAME
from app.http.deps import ServicesDep, require_admin
from app.http.openapi import problems
from app.storage.db.models import ApiKey
from app.usecases import tenants

TenantName = Annotated[str, Path(**TENANT_NAME.constraints)]


router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=problems(401, 404, 409, 422, 503),
)


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = TENANT_NAME.field()


class TenantOut(BaseModel):
    name: str
    created_at: datetime


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: AwareDatetime | None = None


class KeyOut(BaseModel):
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyOut:
        return cls(
            prefix=row.prefix,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


class NewKeyOut(BaseModel):
    key: str = Field(description="shown once; only its keyed hash is stored")
    prefix: str
    expires_at: datetime | None


@router.post("/tenants", status_code=201)
def create_tenant(body: TenantIn, services: ServicesDep) -> TenantOut:
    """Create a tenant (an app)."""
    tenant = tenants.create_tenant(services, name=body.name)
    return TenantOut(name=tenant.name, created_at=tenant.created_at)


@router.get("/tenants")
def list_tenants(services: ServicesDep) -> list[TenantOut]:
    """Every tenant."""
    return [TenantOut(name=t.name, created_at=t.created_at) for t in tenants.list_tenants(services)]


@router.post("/tenants/{name}/keys", status_code=201)
def create_tenant_key(name: TenantName, body: KeyIn, services: ServicesDep) -> NewKeyOut:
    """Create a key for a tenant; the key is in this answer only."""
    key = tenants.create_key(services, tenant_name=name, expires_at=body.expires_at)
    return NewKeyOut(key=key, prefix=key.split("_")[1], expires_at=body.expires_at)


@router.get("/tenants/{name}/keys")
def list_tenant_keys(name: TenantName, services: ServicesDep) -> list[KeyOut]:
    """A tenant's keys, by prefix (never the keys themselves)."""
    return [KeyOut.from_row(row) for row in tenants.list_keys(services, tenant_name=name)]


@router.delete("/tenants/{name}/keys/{prefix}", status_code=204)
def revoke_tenant_key(
    name: TenantName, prefix: Annotated[str, Path(max_length=64)], services: ServicesDep
) -> Response:
    """Revoke a key: refused at once by this process, by every other within
    RAPPORT_KEY_CACHE_S (1 s by default)."""
    tenants.revoke_key(services, tenant_name=name, prefix=prefix)
    return Response(status_code=204)
