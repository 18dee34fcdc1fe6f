"""Request dependencies: the services built at start-up, and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from app.errors import RateLimited, Unauthorized
from app.keys import Caller, authenticate
from app.services import Services


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain function in the thread pool, a hand-off per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_caller(request: Request, services: ServicesDep) -> Caller:
    """The caller of the presented key, rate limited. A key accepted in the last
    RAPPORT_KEY_CACHE_S seconds costs no database query and no thread hand-off;
    the database and a Redis rate limiter are only ever asked from the thread pool."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("send the API key as 'Authorization: Bearer KEY'")
    caller = services.key_cache.get(key)
    if caller is None:
        caller = await run_in_threadpool(_authenticate, services, key)
    limiter = services.rate_limiter
    if limiter.blocking:
        wait = await run_in_threadpool(limiter.acquire, caller.tenant_id)
    else:
        wait = limiter.acquire(caller.tenant_id)
    if wait is not None:
        rate = services.settings.rate_limit_rps
        raise RateLimited(f"over this app's limit of {rate:g} requests per second", wait)
    return caller


def _authenticate(services: Services, key: str) -> Caller:
    with services.sessions() as session:
        caller = authenticate(session=session, key=key, secret=services.settings.key_secret)
    if caller is None:
        raise Unauthorized("the API key is unknown, revoked or expired")
    services.key_cache.put(key, caller)
    return caller


CallerDep = Annotated[Caller, Depends(require_caller)]

UserId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The app's own id of its end user; concepts never cross users.",
    ),
]
ResourceId = Annotated[str, Path(min_length=1, max_length=64)]
