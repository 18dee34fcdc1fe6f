from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.http.deps import ServicesDep, UserScopeDep
from app.http.json_body import json_request_body, read_json
from app.http.openapi import USER_DATA_ERRORS
from app.http.playground_schemas import PlaygroundOut, PlaygroundRequest
from app.usecases.chat_input import read_query
from app.usecases.playground import preview

router = APIRouter(prefix="/v1/users", tags=["retrieval"], responses=USER_DATA_ERRORS)


@router.post("/{user_id}/playground", openapi_extra=json_request_body(PlaygroundRequest))
async def playground(scope: UserScopeDep, body: Request, services: ServicesDep) -> PlaygroundOut:
    """Dry-run /chat: the photo's regions and scores, the concepts found and named, and the
    exact prompt, without calling the generator."""
    request = await read_json(body, PlaygroundRequest)
    query = await run_in_threadpool(read_query, services, request.to_input(), scope.tenant_id)
    result = await run_in_threadpool(preview, services, scope, query=query)
    return PlaygroundOut.from_preview(result, query, services.generator.name)
