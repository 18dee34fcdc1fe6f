"""API keys: random, shown once, stored as a keyed hash, found by a short prefix.

A key is ``rk_<12 hex prefix>_<43 random characters>`` (256 random bits). The
database keeps its prefix and HMAC-SHA256(server secret, key): a stolen
database alone neither reveals keys nor allows checking guesses offline. A fast
keyed hash is right here, since the keys are random; a slow password hash
would only cost every request time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "rk_"


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: one tenant, through one key."""

    tenant_id: int
    key_id: int


def hash_key(key: str, secret: bytes) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def _prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, rest = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or len(rest) < 32:
        return None
    return prefix


def get_or_create_tenant(*, session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(
    *, session: Session, tenant_name: str, secret: bytes, expires_at: datetime | None = None
) -> str:
    """Create a key for ``tenant_name`` (creating the tenant if new); return it in clear."""
    tenant = get_or_create_tenant(session=session, name=tenant_name)
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiKey(
            tenant_id=tenant.id,
            prefix=prefix,
            key_hash=hash_key(key, secret),
            expires_at=expires_at,
        )
    )
    session.flush()
    return key


def revoke_key(*, session: Session, key_or_prefix: str, tenant_id: int | None = None) -> bool:
    """Revoke a key given in full or by its prefix (within ``tenant_id`` when given).

    False when no live key matched.
    """
    prefix = _prefix_of(key_or_prefix) or key_or_prefix.removeprefix(KEY_PREFIX)
    query = select(ApiKey).where(ApiKey.prefix == prefix)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    row = session.scalar(query)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


def list_keys(*, session: Session, tenant_id: int) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.id)
    return session.scalars(query).all()


def authenticate(*, session: Session, key: str, secret: bytes) -> Caller | None:
    """The caller a presented key stands for, or None for a bad, revoked or expired key."""
    prefix = _prefix_of(key)
    if prefix is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    # Compare even when nothing matched, so that timing does not tell prefixes apart.
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(expected, hash_key(key, secret)) or row is None:
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return Caller(tenant_id=row.tenant_id, key_id=row.id)
