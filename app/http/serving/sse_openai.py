"""OpenAI's chat stream: ``chat.completion.chunk`` events, then ``[DONE]``.

The first chunk carries the role and rapport's concepts; in memory ``propose`` and
``auto`` an empty chunk before the finish carries ``rapport.memory_changes``; the last, with
``stream_options.include_usage``, the usage. An error after the first byte
becomes an ``{"error": problem}`` event, then ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from starlette.responses import StreamingResponse

from app.http.chat_schemas import MemoryChangeOut, UsageOut, used_concepts
from app.http.openai_schemas import completion_id, now
from app.http.serving.chat import ChatEvents, ConceptsEvent, Done, MemoryChanges, TextDelta
from app.http.streaming import event_stream, sse


def openai_sse(events: ChatEvents, *, include_usage: bool) -> StreamingResponse:
    return event_stream(
        _render(events, include_usage),
        on_error=lambda problem: sse({"error": problem}) + sse("[DONE]"),
    )


async def _render(events: ChatEvents, include_usage: bool) -> AsyncIterator[bytes]:
    piece = partial(chunk, id=completion_id(), created=now(), model=events.model)
    async for event in events:
        match event:
            case ConceptsEvent(used=used):
                concepts = [concept.model_dump() for concept in used_concepts(used)]
                first = {"role": "assistant", "content": ""}
                yield sse(piece(delta=first, rapport={"concepts": concepts}))
            case TextDelta(text=text):
                yield sse(piece(delta={"content": text}))
            case MemoryChanges(changes=changes):
                listed = [MemoryChangeOut.from_change(c).model_dump() for c in changes]
                memory = {"memory": events.memory, "memory_changes": listed}
                yield sse(piece(delta={}, rapport=memory))
            case Done(generation=generation):
                yield sse(piece(delta={}, finish_reason=generation.finish_reason))
                if include_usage:
                    usage = UsageOut.from_generation(generation)
                    yield sse(piece(delta={}, usage=usage, choices=False))
    yield sse("[DONE]")


def chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    usage: UsageOut | None = None,
    choices: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI streams them."""
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        if choices
        else [],
        **extra,
    }
    if usage is not None:
        body["usage"] = usage.model_dump()
    return body
