"""Tenant rows (apps) and what a tenant stores: usage counts and the bytes its quota charges."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.storage_charge import photo_charge, vector_charge
from app.storage.db.models import Concept, Embedding, ImageRow, Tenant, User


def find_tenant(*, session: Session, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def list_tenants(*, session: Session) -> Sequence[Tenant]:
    """Every tenant, by name."""
    return session.scalars(select(Tenant).order_by(Tenant.name)).all()


def add_tenant(*, session: Session, name: str) -> Tenant:
    """Insert a tenant in a savepoint: a taken name raises IntegrityError and leaves the
    caller's transaction usable."""
    with session.begin_nested():
        tenant = Tenant(name=name)
        session.add(tenant)
    return tenant


def get_or_create_tenant(*, session: Session, name: str) -> Tenant:
    """The tenant named ``name``, created if new (safe when two callers create it at once)."""
    tenant = find_tenant(session=session, name=name)
    if tenant is not None:
        return tenant
    try:
        return add_tenant(session=session, name=name)
    except IntegrityError:  # lost the race: the savepoint kept the transaction
        tenant = find_tenant(session=session, name=name)
        if tenant is None:
            raise
        return tenant


def stored_bytes(*, size_bytes: int, dims: Sequence[int]) -> int:
    """Storage charged for a photo of ``size_bytes`` with vectors of ``dims`` (float32)."""
    return int(photo_charge(size_bytes, max) + sum(vector_charge(dim) for dim in dims))


def _sql_at_least(value: ColumnElement[int], floor: int) -> ColumnElement[int]:
    return case((value < floor, floor), else_=value)


def tenant_bytes(*, session: Session, tenant_id: int) -> int:
    """Storage the tenant uses, as ``stored_bytes`` charges it: photos (at least a file
    block each), their rows and every vector, not only the bytes as uploaded."""
    photos = (
        select(func.coalesce(func.sum(photo_charge(ImageRow.size_bytes, _sql_at_least)), 0))
        .join(User, User.id == ImageRow.user_id)
        .where(User.tenant_id == tenant_id)
    )
    vectors = (
        select(func.coalesce(func.sum(vector_charge(Embedding.dim)), 0))
        .join(User, User.id == Embedding.user_id)
        .where(User.tenant_id == tenant_id)
    )
    return int(session.scalar(photos) or 0) + int(session.scalar(vectors) or 0)


def tenant_usage(*, session: Session, tenant_id: int) -> tuple[int, int, int, int]:
    """(users, concepts, photos, bytes of photos) the tenant stores."""
    users = session.scalar(
        select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
    )
    concepts = session.scalar(
        select(func.count())
        .select_from(Concept)
        .join(User, User.id == Concept.user_id)
        .where(User.tenant_id == tenant_id)
    )
    photos = session.scalar(
        select(func.count())
        .select_from(ImageRow)
        .join(User, User.id == ImageRow.user_id)
        .where(User.tenant_id == tenant_id)
    )
    return (
        int(users or 0),
        int(concepts or 0),
        int(photos or 0),
        tenant_bytes(session=session, tenant_id=tenant_id),
    )
