"""Request dependencies: the services built at start-up, and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.errors import RateLimited, Unauthorized
from app.keys import Caller, authenticate
from app.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_caller(request: Request, services: ServicesDep) -> Caller:
    # A sync dependency: FastAPI runs it in the thread pool, off the event loop.
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer KEY'")
    with services.sessions() as session:
        caller = authenticate(session=session, key=key.strip(), secret=services.settings.key_secret)
    if caller is None:
        raise Unauthorized("the API key is unknown, revoked or expired")
    wait = services.rate_limiter.acquire(caller.tenant_id)
    if wait is not None:
        rate = services.settings.rate_limit_rps
        raise RateLimited(f"over this app's limit of {rate:g} requests per second", wait)
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
