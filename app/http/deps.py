"""Request dependencies: the services built at start-up, the authenticated caller, and the
end user (of the caller's tenant) a request acts on."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.domain.errors import Unauthorized
from app.domain.ids import RESOURCE_ID, USER_ID
from app.domain.scope import UserScope
from app.security.keys import Caller
from app.services import Services


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain function in the thread pool, a hand-off per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_caller(request: Request) -> Caller:
    """The caller that ``AuthGate`` authenticated (and rate limited) from the headers,
    before the body was read. Fails closed when the gate did not run."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise Unauthorized("send the API key as 'Authorization: Bearer KEY'")
    return caller


async def require_admin(request: Request) -> None:
    """Passes only when ``AuthGate`` accepted the admin key for this request."""
    if getattr(request.state, "admin", False) is not True:
        raise Unauthorized("send the admin key as 'Authorization: Bearer KEY'")


CallerDep = Annotated[Caller, Depends(require_caller)]

UserId = Annotated[
    str,
    Path(
        **USER_ID.constraints,
        description="The app's own id of its end user; concepts never cross users.",
    ),
]


async def user_scope(user_id: UserId, caller: CallerDep) -> UserScope:
    """The user named in the path, within the caller's tenant."""
    return UserScope(tenant_id=caller.tenant_id, external_user_id=user_id)


UserScopeDep = Annotated[UserScope, Depends(user_scope)]

ResourceId = Annotated[str, Path(**RESOURCE_ID.constraints)]
