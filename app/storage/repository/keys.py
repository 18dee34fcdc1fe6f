"""API key rows: a tenant's keys by lookup prefix, their keyed hashes, expiry and revocation.

Making and checking keys (format, HMAC) is ``app/security/keys.py``; this module only stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.storage.db.models import ApiKey, utcnow


def add_key(
    *, session: Session, tenant_id: int, prefix: str, key_hash: str, expires_at: datetime | None
) -> None:
    session.add(
        ApiKey(tenant_id=tenant_id, prefix=prefix, key_hash=key_hash, expires_at=expires_at)
    )
    session.flush()


def find_key(*, session: Session, prefix: str, tenant_id: int | None = None) -> ApiKey | None:
    """The key with this prefix (within ``tenant_id`` when given), revoked or not."""
    query = select(ApiKey).where(ApiKey.prefix == prefix)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return session.scalar(query)


def revoke_key(*, session: Session, prefix: str, tenant_id: int | None = None) -> bool:
    """Mark the live key with this prefix revoked; False when no live key matched."""
    row = find_key(session=session, prefix=prefix, tenant_id=tenant_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


def list_keys(*, session: Session, tenant_id: int) -> Sequence[ApiKey]:
    """A tenant's keys, oldest first."""
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.id)
    return session.scalars(query).all()
