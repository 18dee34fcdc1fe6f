"""Tenants (apps) and their API keys, as the admin key manages them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, NotFound
from app.security import keys
from app.services import Services
from app.storage.db.models import ApiKey, Tenant
from app.storage.repository import keys as key_rows
from app.storage.repository import tenants as tenant_rows


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant stores."""

    users: int
    concepts: int
    photos: int
    bytes: int


def create_tenant(services: Services, *, name: str) -> Tenant:
    """A new tenant; Conflict when the name is taken (also by a concurrent create)."""
    with services.sessions() as session:
        if tenant_rows.find_tenant(session=session, name=name) is not None:
            raise Conflict(f"tenant {name!r} exists")
        try:
            tenant = tenant_rows.add_tenant(session=session, name=name)
        except IntegrityError:  # the unique name decided a race between two creates
            raise Conflict(f"tenant {name!r} exists") from None
        session.commit()
        return tenant


def list_tenants(services: Services) -> Sequence[Tenant]:
    """Every tenant, by name."""
    with services.sessions() as session:
        return tenant_rows.list_tenants(session=session)


def create_key(services: Services, *, tenant_name: str, expires_at: datetime | None) -> str:
    """A new key of an existing tenant, in clear (it is stored only as a keyed hash)."""
    with services.sessions() as session:
        _tenant(session, tenant_name)
        key = keys.create_key(
            session=session,
            tenant_name=tenant_name,
            secret=services.settings.key_secret,
            expires_at=expires_at,
        )
        session.commit()
    return key


def list_keys(services: Services, *, tenant_name: str) -> Sequence[ApiKey]:
    """A tenant's keys, oldest first."""
    with services.sessions() as session:
        tenant = _tenant(session, tenant_name)
        return key_rows.list_keys(session=session, tenant_id=tenant.id)


def revoke_key(services: Services, *, tenant_name: str, prefix: str) -> None:
    """Revoke a live key of the tenant: refused at once by this process (its cache forgets
    it), by others within their key cache's lifetime. NotFound when no live key matched."""
    with services.sessions() as session:
        tenant = _tenant(session, tenant_name)
        revoked = keys.revoke_key(session=session, key_or_prefix=prefix, tenant_id=tenant.id)
        if revoked is None:
            raise NotFound(f"no live key {prefix!r} for tenant {tenant_name!r}")
        session.commit()
    services.key_cache.forget(revoked)


def tenant_usage(services: Services, *, tenant_name: str) -> TenantUsage:
    """Users, concepts, photos and bytes the tenant stores."""
    with services.sessions() as session:
        tenant = _tenant(session, tenant_name)
        return TenantUsage(*tenant_rows.tenant_usage(session=session, tenant_id=tenant.id))


def _tenant(session: Session, name: str) -> Tenant:
    tenant = tenant_rows.find_tenant(session=session, name=name)
    if tenant is None:
        raise NotFound(f"no tenant {name!r}")
    return tenant
