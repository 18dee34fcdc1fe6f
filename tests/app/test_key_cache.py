from __future__ import annotations

from datetime import timedelta

from app.security.keys import Caller, KeyCache
from app.storage.db.models import utcnow

SECRET = b"s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def caller(prefix: str = "aaaaaaaaaaaa", **extra: object) -> Caller:
    return Caller(tenant_id=1, key_id=7, key_prefix=prefix, **extra)  # type: ignore[arg-type]


def test_an_accepted_key_is_trusted_for_ttl_then_asked_again() -> None:
    clock = Clock()
    cache = KeyCache(1.0, SECRET, clock=clock)
    assert cache.get("rk_a") is None
    cache.put("rk_a", caller())
    clock.now += 0.99
    assert cache.get("rk_a") == caller()
    assert cache.get("rk_b") is None  # another key is never taken for this one
    clock.now += 0.02
    assert cache.get("rk_a") is None


def test_a_cached_key_never_outlives_its_expiry() -> None:
    clock = Clock()
    cache = KeyCache(60.0, SECRET, clock=clock)
    cache.put("rk_a", caller(expires_at=utcnow() + timedelta(seconds=2)))
    clock.now += 1
    assert cache.get("rk_a") is not None
    clock.now += 1.5
    assert cache.get("rk_a") is None


def test_forget_drops_a_revoked_key_at_once() -> None:
    cache = KeyCache(60.0, SECRET, clock=Clock())
    cache.put("rk_a", caller("aaaaaaaaaaaa"))
    cache.put("rk_b", caller("bbbbbbbbbbbb"))
    cache.forget("aaaaaaaaaaaa")
    assert cache.get("rk_a") is None
    assert cache.get("rk_b") is not None


def test_the_cache_is_bounded_and_zero_ttl_turns_it_off() -> None:
    cache = KeyCache(60.0, SECRET, max_entries=2, clock=Clock())
    for key in ("rk_a", "rk_b", "rk_c"):
        cache.put(key, caller())
    assert cache.get("rk_a") is None  # the least recently stored went first
    assert cache.get("rk_b") is not None and cache.get("rk_c") is not None
    off = KeyCache(0, SECRET)
    off.put("rk_a", caller())
    assert off.get("rk_a") is None


def test_keys_are_held_only_as_keyed_hashes() -> None:
    cache = KeyCache(60.0, SECRET, clock=Clock())
    cache.put("rk_secret_value", caller())
    assert "rk_secret_value" not in repr(cache._entries)
