from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from app.http.chat_schemas import ChatOut, ChatRequest
from app.http.deps import ServicesDep, UserScopeDep
from app.http.json_body import json_request_body, read_json
from app.http.openapi import USER_DATA_ERRORS, problems
from app.http.serving.chat import ChatServing
from app.http.serving.sse_rapport import rapport_sse

router = APIRouter(
    prefix="/v1/users", tags=["chat"], responses=USER_DATA_ERRORS | problems(502, 504)
)


@router.post(
    "/{user_id}/chat",
    response_model=ChatOut,
    responses={200: {"content": {"text/event-stream": {}}, "description": "with stream: true"}},
    openapi_extra=json_request_body(ChatRequest),
)
async def chat(
    scope: UserScopeDep, body: Request, services: ServicesDep
) -> ChatOut | StreamingResponse:
    """Answer about the user's photo with their concepts in the prompt (SSE with stream: true)."""
    serving = ChatServing(services, scope)
    request = await read_json(body, ChatRequest)
    if request.stream:
        return rapport_sse(await serving.stream(request.to_input()))
    return ChatOut.from_answer(await serving.complete(request.to_input()))
