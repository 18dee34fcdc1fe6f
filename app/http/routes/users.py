from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from app.domain.ids import USER_ID
from app.http.deps import CallerDep, ServicesDep, UserScopeDep
from app.http.openapi import USER_DATA_ERRORS
from app.http.schemas import UserOut, UserPage, UserPatch
from app.usecases.export import plan_export
from app.usecases.memory_modes import set_user_memory
from app.usecases.users import erase_user, get_user, list_users

router = APIRouter(prefix="/v1/users", tags=["users"], responses=USER_DATA_ERRORS)


@router.get("")
def list_app_users(
    caller: CallerDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=USER_ID.max_length)] = None,
    prefix: Annotated[
        str | None,
        Query(max_length=USER_ID.max_length, description="only users whose id starts with this"),
    ] = None,
) -> UserPage:
    """List the app's users by id with their counts; pass next_cursor back for the next page."""
    users, next_cursor = list_users(
        services, tenant_id=caller.tenant_id, limit=limit, after=cursor, prefix=prefix
    )
    return UserPage(items=[UserOut.from_counts(u) for u in users], next_cursor=next_cursor)


@router.get("/{user_id}")
def get_app_user(scope: UserScopeDep, services: ServicesDep) -> UserOut:
    """One user with their counts."""
    return UserOut.from_counts(get_user(services, scope=scope))


@router.patch("/{user_id}")
def patch_app_user(scope: UserScopeDep, patch: UserPatch, services: ServicesDep) -> UserOut:
    """Set the user's memory mode (the widest their chats may use) and whether auto deletes."""
    set_user_memory(services, scope, mode=patch.memory, deletes=patch.memory_deletes)
    return UserOut.from_counts(get_user(services, scope=scope))


@router.get(
    "/{user_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the zip, streamed"}},
)
def export_user(scope: UserScopeDep, services: ServicesDep) -> StreamingResponse:
    """A zip of the user's concepts, one folder each (photos and concept.json), as
    `rapport import` reads them."""
    export = plan_export(services, scope=scope)
    return StreamingResponse(
        export.chunks(services),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.delete("/{user_id}", status_code=204)
def delete_user(scope: UserScopeDep, services: ServicesDep) -> Response:
    """Erase a user: every concept, photo, vector and stored file of theirs."""
    erase_user(services, scope=scope)
    return Response(status_code=204)
