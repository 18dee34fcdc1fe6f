"""What each tenant stores, for the admin key (beside app/http/routes/admin.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.http.deps import ServicesDep
from app.http.openapi import problems
from app.http.routes.admin import TenantName, require_admin
from app.usecases import tenants

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=problems(401, 404, 422, 503),
)


class UsageOut(BaseModel):
    users: int
    concepts: int
    photos: int
    bytes: int


@router.get("/tenants/{name}/usage")
def tenant_usage(name: TenantName, services: ServicesDep) -> UsageOut:
    """What a tenant stores: users, concepts, photos and their bytes (requests are counted
    by /metrics per route, not per tenant)."""
    usage = tenants.tenant_usage(services, tenant_name=name)
    return UsageOut(
        users=usage.users, concepts=usage.concepts, photos=usage.photos, bytes=usage.bytes
    )
