from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from app.chat_schemas import ChatOut, ChatRequest, UsageOut, concepts_of
from app.deps import CallerDep, ServicesDep, UserId
from app.openapi import USER_DATA_ERRORS, problems
from app.streaming import StartedStream, event_stream, sse
from app.usecases.chat import answer_chat, stream_chat
from app.usecases.chat_input import ChatDefaults
from retrieval import Generation, to_openai_messages

router = APIRouter(
    prefix="/v1/users", tags=["chat"], responses=USER_DATA_ERRORS | problems(502, 504)
)


@router.post(
    "/{user_id}/chat",
    response_model=ChatOut,
    responses={200: {"content": {"text/event-stream": {}}, "description": "with stream: true"}},
)
async def chat(
    user_id: UserId, request: ChatRequest, caller: CallerDep, services: ServicesDep
) -> ChatOut | StreamingResponse:
    """Answer about the user's photo with their concepts in the prompt (SSE with stream: true)."""
    query = await run_in_threadpool(request.to_query, ChatDefaults.of(services))
    if request.stream:
        prepared, stream = await run_in_threadpool(
            stream_chat, services, tenant_id=caller.tenant_id, external_user_id=user_id, query=query
        )
        started = await StartedStream.start(stream)

        async def events() -> AsyncIterator[bytes]:
            concepts = [c.model_dump() for c in concepts_of(prepared)]
            yield sse({"concepts": concepts}, "concepts")
            async for item in started.items():
                if isinstance(item, Generation):
                    done = {
                        "answer": item.text,
                        "finish_reason": item.finish_reason,
                        "usage": UsageOut.from_generation(item).model_dump(),
                        "model": services.generator.model,
                    }
                    yield sse(done, "done")
                else:
                    yield sse({"text": item}, "delta")

        return event_stream(events(), on_error=lambda problem: sse(problem, "error"))
    answer = await run_in_threadpool(
        answer_chat, services, tenant_id=caller.tenant_id, external_user_id=user_id, query=query
    )
    prompt = None
    if services.generator.name == "none":
        image_max_side = services.settings.generator_image_max_side
        prompt = await run_in_threadpool(
            to_openai_messages, answer.prepared.prompt, image_max_side=image_max_side
        )
    return ChatOut.from_answer(answer, model=services.generator.model, prompt=prompt)
