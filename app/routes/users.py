from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import CallerDep, ServicesDep, UserId
from app.openapi import USER_DATA_ERRORS
from app.usecases.users import erase_user

router = APIRouter(prefix="/v1/users", tags=["users"], responses=USER_DATA_ERRORS)


@router.delete("/{user_id}", status_code=204)
def delete_user(user_id: UserId, caller: CallerDep, services: ServicesDep) -> Response:
    """Erase a user: every concept, photo, vector and stored file of theirs."""
    erase_user(services, tenant_id=caller.tenant_id, external_user_id=user_id)
    return Response(status_code=204)
