from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import StreamingResponse

from app.http.chat_schemas import ChatOut, ChatRequest
from app.http.deps import ServicesDep, UserScopeDep
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
)
async def chat(
    scope: UserScopeDep, request: ChatRequest, services: ServicesDep
) -> ChatOut | StreamingResponse:
    """Answer about the user's photo with their concepts in the prompt (SSE with stream: true)."""
    serving = ChatServing(services, scope)
    if request.stream:
        return rapport_sse(await serving.stream(request.to_input()))
    return ChatOut.from_answer(await serving.complete(request.to_input()))
