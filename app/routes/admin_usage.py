"""What each tenant stores, for the admin key (beside app/routes/admin.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from app.db.models import Tenant
from app.deps import ServicesDep
from app.openapi import problems
from app.repository import tenants as tenant_rows
from app.routes.admin import TenantName, require_admin
from retrieval.errors import NotFound

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
    with services.sessions() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == name))
        if tenant is None:
            raise NotFound(f"no tenant {name!r}")
        users, concepts, photos, size = tenant_rows.tenant_usage(
            session=session, tenant_id=tenant.id
        )
    return UsageOut(users=users, concepts=concepts, photos=photos, bytes=size)
