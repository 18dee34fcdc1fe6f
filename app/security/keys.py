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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from app.storage.db.models import utcnow
from app.storage.repository import keys as key_rows
from app.storage.repository import tenants as tenant_rows
from retrieval.errors import InvalidRequest

KEY_PREFIX = "rk_"


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: one tenant, through one key."""

    tenant_id: int
    key_id: int
    key_prefix: str = field(default="", compare=False)
    expires_at: datetime | None = field(default=None, compare=False)


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


def create_key(
    *, session: Session, tenant_name: str, secret: bytes, expires_at: datetime | None = None
) -> str:
    """Create a key for ``tenant_name`` (creating the tenant if new); return it in clear.

    Raises InvalidRequest for an expiry that is not in the future (a dead key)."""
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidRequest("expires_at must be in the future")
    tenant = tenant_rows.get_or_create_tenant(session=session, name=tenant_name)
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key_rows.add_key(
        session=session,
        tenant_id=tenant.id,
        prefix=prefix,
        key_hash=hash_key(key, secret),
        expires_at=expires_at,
    )
    return key


def revoke_key(*, session: Session, key_or_prefix: str, tenant_id: int | None = None) -> str | None:
    """Revoke a key given in full or by its prefix (within ``tenant_id`` when given).

    The revoked key's prefix, or None when no live key matched.
    """
    prefix = _prefix_of(key_or_prefix) or key_or_prefix.removeprefix(KEY_PREFIX)
    revoked = key_rows.revoke_key(session=session, prefix=prefix, tenant_id=tenant_id)
    return prefix if revoked else None


def authenticate(*, session: Session, key: str, secret: bytes) -> Caller | None:
    """The caller a presented key stands for, or None for a bad, revoked or expired key."""
    prefix = _prefix_of(key)
    if prefix is None:
        return None
    row = key_rows.find_key(session=session, prefix=prefix)
    # Compare even when nothing matched, so that timing does not tell prefixes apart.
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(expected, hash_key(key, secret)) or row is None:
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return Caller(
        tenant_id=row.tenant_id, key_id=row.id, key_prefix=row.prefix, expires_at=row.expires_at
    )


class KeyCache:
    """Callers of keys that passed ``authenticate`` in the last ``ttl_s`` seconds.

    Every request needs its caller; asking the database each time costs a
    round trip and a query (about 0.5 ms of CPU on PostgreSQL). With the cache,
    a key revoked elsewhere (another worker, ``rapport keys revoke``) stops
    working within ``ttl_s``; in the process that revoked it, at once
    (``forget``). A cached key never outlives its own expiry. Only accepted keys
    are cached, so unknown keys cannot fill it; ``ttl_s=0`` turns it off.
    """

    def __init__(
        self,
        ttl_s: float,
        secret: bytes,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._secret = secret
        self._max = max_entries
        self._clock = clock
        # HMAC of the key (never the key itself) -> (caller, monotonic deadline)
        self._entries: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Caller | None:
        if self.ttl_s <= 0:
            return None
        digest = hash_key(key, self._secret)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            caller, deadline = entry
            if self._clock() >= deadline:
                del self._entries[digest]
                return None
            return caller

    def put(self, key: str, caller: Caller) -> None:
        if self.ttl_s <= 0:
            return
        lifetime = self.ttl_s
        if caller.expires_at is not None:
            lifetime = min(lifetime, (caller.expires_at - utcnow()).total_seconds())
        deadline = self._clock() + lifetime
        digest = hash_key(key, self._secret)
        with self._lock:
            self._entries[digest] = (caller, deadline)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, prefix: str) -> None:
        """Drop the key with this prefix (it was just revoked in this process)."""
        with self._lock:
            for digest in [d for d, (c, _) in self._entries.items() if c.key_prefix == prefix]:
                del self._entries[digest]
