from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from app.chat_schemas import UsageOut, concepts_of
from app.deps import CallerDep, ServicesDep
from app.openai_schemas import (
    AssistantMessage,
    Choice,
    Completion,
    CompletionRequest,
    ModelList,
    RapportInfo,
    chunk,
    completion_id,
    now,
)
from app.openapi import OPENAI_ROUTE_ERRORS
from app.streaming import StartedStream, event_stream, sse
from app.usecases.chat import answer_chat, require_generator, stream_chat
from app.usecases.chat_input import ChatDefaults
from retrieval import Generation

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
)
async def chat_completions(
    request: CompletionRequest, caller: CallerDep, services: ServicesDep
) -> Completion | StreamingResponse:
    """OpenAI-compatible chat; ``user`` names the end user whose concepts personalize it."""
    require_generator(services)
    query = await run_in_threadpool(request.to_query, ChatDefaults.of(services))
    model = services.generator.model
    ident, created = completion_id(), now()
    if not request.stream:
        answer = await run_in_threadpool(
            answer_chat,
            services,
            tenant_id=caller.tenant_id,
            external_user_id=request.user,
            query=query,
        )
        generation = answer.generation
        return Completion(
            id=ident,
            created=created,
            model=model,
            choices=[
                Choice(
                    message=AssistantMessage(content=generation.text),
                    finish_reason=generation.finish_reason,
                )
            ],
            usage=UsageOut.from_generation(generation),
            rapport=RapportInfo(concepts=concepts_of(answer.prepared)),
        )

    prepared, stream = await run_in_threadpool(
        stream_chat,
        services,
        tenant_id=caller.tenant_id,
        external_user_id=request.user,
        query=query,
    )
    started = await StartedStream.start(stream)
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    concepts = [c.model_dump() for c in concepts_of(prepared)]

    async def events() -> AsyncIterator[bytes]:
        first = {"role": "assistant", "content": ""}
        yield sse(
            chunk(
                id=ident, created=created, model=model, delta=first, rapport={"concepts": concepts}
            )
        )
        async for item in started.items():
            if isinstance(item, Generation):
                yield sse(
                    chunk(
                        id=ident,
                        created=created,
                        model=model,
                        delta={},
                        finish_reason=item.finish_reason,
                    )
                )
                if include_usage:
                    usage = UsageOut.from_generation(item)
                    yield sse(
                        chunk(
                            id=ident,
                            created=created,
                            model=model,
                            delta={},
                            usage=usage,
                            choices=False,
                        )
                    )
            else:
                yield sse(chunk(id=ident, created=created, model=model, delta={"content": item}))
        yield sse("[DONE]")

    return event_stream(events(), on_error=lambda problem: sse({"error": problem}) + sse("[DONE]"))
