"""Admission: whether an authenticated app's request may start now, in one place.

The auth gate (``app.security.auth_gate``) says who is calling; this step then
applies the app's rate limit (requests per second, shared through Redis when it
is configured) and counts the request among the app's requests in progress in
this process (``InFlightLimit``). A refusal costs no body, no database query
and no decoding. What an admitted request may then ask of the encoder is a
separate, explicit question (``BatchingEncoder``'s per-app share).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from app.domain.errors import RateLimited
from app.security.keys import Caller
from app.services import Services


async def admit(services: Services, caller: Caller) -> None:
    """Let ``caller``'s request start, or raise RateLimited (429 + Retry-After).

    Once admitted, the request is counted in progress until ``leave``.
    """
    limiter = services.rate_limiter
    if limiter.blocking:
        wait = await run_in_threadpool(limiter.acquire, caller.tenant_id)
    else:
        wait = limiter.acquire(caller.tenant_id)
    if wait is not None:
        rate = services.settings.rate_limit_rps
        raise RateLimited(f"over this app's limit of {rate:g} requests per second", wait)
    if not services.in_flight.try_enter(caller.tenant_id):
        share = services.in_flight.share(caller.tenant_id)
        raise RateLimited(f"this app already has {share} requests in progress here", 1.0)


def leave(services: Services, caller: Caller) -> None:
    """The admitted request of ``caller`` has ended."""
    services.in_flight.leave(caller.tenant_id)
