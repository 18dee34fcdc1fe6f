"""Requests per second per tenant: a token bucket, shared through Redis across processes.

Without Redis each process keeps its own buckets (a tenant then gets the rate
once per process). When Redis fails, requests are let through and the failure
is logged: the limit protects the service, it must not take it down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst. Returns {allowed, seconds to wait}.
_TOKEN_BUCKET = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed, wait = 0, (1 - tokens) / rate
if tokens >= 1 then
  tokens, allowed, wait = tokens - 1, 1, 0
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class RateLimiter(Protocol):
    blocking: bool  # True when acquire waits on the network (run it off the event loop)

    def acquire(self, tenant_id: int) -> float | None:
        """None when the request may go on, else the seconds to wait before retrying."""
        ...


class NoRateLimit:
    blocking = False

    def acquire(self, tenant_id: int) -> float | None:
        return None


class LocalTokenBuckets:
    """Buckets in this process only."""

    blocking = False

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, tenant_id: int) -> float | None:
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(tenant_id, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[tenant_id] = (tokens - 1, now)
                return None
            self._buckets[tenant_id] = (tokens, now)
            return (1 - tokens) / self.rate


class RedisTokenBuckets:
    """Buckets in Redis: one limit per tenant over every process and host."""

    blocking = True

    def __init__(self, url: str, rate: float, burst: int, prefix: str = "rapport:") -> None:
        import redis

        self.rate, self.burst, self.prefix = rate, burst, prefix
        self._client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self._script = self._client.register_script(_TOKEN_BUCKET)

    def acquire(self, tenant_id: int) -> float | None:
        try:
            allowed, wait = self._script(
                keys=[f"{self.prefix}rate:{tenant_id}"], args=[self.rate, self.burst]
            )
        except Exception as error:
            logger.warning("rate limit not applied, Redis failed: %s", type(error).__name__)
            return None
        return None if int(allowed) else float(wait)

    def close(self) -> None:
        self._client.close()


class AuthFailureLimiter:
    """Failed authentications per client address, in this process: a token bucket of
    ``burst`` failures refilled at ``per_minute``. Bounded to ``max_addresses``
    (the least recently failing are forgotten), so spoofed variety cannot fill memory."""

    def __init__(self, per_minute: float, burst: int, *, max_addresses: int = 100_000) -> None:
        self.rate, self.burst, self._max = per_minute / 60.0, burst, max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.burst), now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def blocked(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        if self.rate <= 0:
            return None
        with self._lock:
            if address not in self._buckets:
                return None
            tokens = self._tokens(address, time.monotonic())
        return None if tokens >= 1 else (1 - tokens) / self.rate

    def record(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(address, now)
            self._buckets[address] = (max(tokens - 1, 0.0), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)


class InFlightLimit:
    """Requests of one app in progress in this process, at most ``limit`` at once, so
    that one app's slow or many requests cannot hold every thread of the pool (0: no
    limit).

    With ``threads`` (the pool's size), an app's share also shrinks as other apps get
    busy: with N apps having requests in progress, each may start one while it has
    fewer than ``threads // (N + 1)`` (at least MIN_SHARE), so the busy apps together
    always leave room for one more app. Two apps at a fixed half of the pool each
    held every thread, and a third app's one-row GET waited 6-21 s.
    """

    MIN_SHARE = 2

    def __init__(self, limit: int, threads: int = 0) -> None:
        self.limit, self.threads = limit, threads
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def share(self, tenant_id: int) -> int:
        """How many requests ``tenant_id`` may have in progress now."""
        if self.threads <= 0:
            return self.limit
        busy = len(self._counts) + (tenant_id not in self._counts)
        return min(self.limit, max(self.MIN_SHARE, self.threads // (busy + 1)))

    def try_enter(self, tenant_id: int) -> bool:
        """Count one more request of ``tenant_id``; False (and not counted) when it already
        has its share in progress."""
        if self.limit <= 0:
            return True
        with self._lock:
            count = self._counts.get(tenant_id, 0)
            if count >= self.share(tenant_id):
                return False
            self._counts[tenant_id] = count + 1
            return True

    def leave(self, tenant_id: int) -> None:
        """One request of ``tenant_id`` (counted by ``try_enter``) has ended."""
        if self.limit <= 0:
            return
        with self._lock:
            count = self._counts.pop(tenant_id, 0) - 1
            if count > 0:
                self._counts[tenant_id] = count


def open_rate_limiter(
    redis_url: str | None, rate: float, burst: int, prefix: str = "rapport:"
) -> RateLimiter:
    """Rate 0 turns limiting off."""
    if rate <= 0:
        return NoRateLimit()
    if redis_url:
        return RedisTokenBuckets(redis_url, rate, burst, prefix)
    logger.warning("RAPPORT_REDIS_URL is not set: rate limits are per process, not per service")
    return LocalTokenBuckets(rate, burst)
