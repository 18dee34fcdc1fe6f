"""API keys: random, shown once, stored as a SHA-256 hash, found by a short prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "rk_"


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: one tenant, through one key."""

    tenant_id: int
    key_id: int


def _hash(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is as safe as a slow one here.
    return hashlib.sha256(key.encode()).hexdigest()


def _split(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or len(secret) < 32:
        return None
    return prefix


def create_key(*, session: Session, tenant_name: str) -> str:
    """Create a key for ``tenant_name`` (creating the tenant if new); return it in clear."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(name=tenant_name)
        session.add(tenant)
        session.flush()
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=_hash(key)))
    session.flush()
    return key


def revoke_key(*, session: Session, key_or_prefix: str) -> bool:
    """Revoke a key given in full or by its prefix; False when no live key matched."""
    prefix = _split(key_or_prefix) or key_or_prefix.removeprefix(KEY_PREFIX)
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


def authenticate(*, session: Session, key: str) -> Caller | None:
    """The caller a presented key stands for, or None for a bad or revoked key."""
    prefix = _split(key)
    if prefix is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return Caller(tenant_id=row.tenant_id, key_id=row.id)
