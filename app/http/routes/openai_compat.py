from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from app.domain.scope import UserScope
from app.http.deps import CallerDep, ServicesDep
from app.http.json_body import json_request_body, read_json
from app.http.openai_schemas import Completion, CompletionRequest, ModelList, now
from app.http.openapi import OPENAI_ROUTE_ERRORS
from app.http.serving.chat import ChatServing
from app.http.serving.sse_openai import openai_sse
from app.usecases.chat import require_generator

router = APIRouter(
    prefix="/v1",
    tags=["openai-compatible"],
    responses=OPENAI_ROUTE_ERRORS,
)


# Models are loaded at start-up: the "created" time OpenAI's clients expect.
_STARTED = now()


@router.get("/models", response_model=ModelList)
async def list_models(_: CallerDep, services: ServicesDep) -> ModelList:
    """The models a completion's ``model`` may name: the configured generator's (none
    without a generator). Completions always use it, whatever ``model`` says."""
    return ModelList.of(services.generator.model, _STARTED)


@router.post(
    "/chat/completions",
    response_model=Completion,
    responses={200: {"content": {"text/event-stream": {}}, "description": "with stream: true"}},
    openapi_extra=json_request_body(CompletionRequest),
)
async def chat_completions(
    body: Request, caller: CallerDep, services: ServicesDep
) -> Completion | StreamingResponse:
    """OpenAI-compatible chat; ``user`` names the end user whose concepts personalize it."""
    require_generator(services)  # before the body is read
    request = await read_json(body, CompletionRequest)
    scope = UserScope(caller.tenant_id, request.user) if request.user else None
    serving = ChatServing(services, scope, generator_required=True)
    if request.stream:
        events = await serving.stream(request.to_input())
        return openai_sse(events, include_usage=request.include_usage)
    return Completion.from_answer(await serving.complete(request.to_input()))
