"""rapport's chat stream: a ``concepts`` event, ``delta`` events, then ``done``; in memory
``propose`` and ``auto`` a ``memory`` event (the changes made or proposed) before ``done``.

An error after the first byte becomes a last ``error`` event (a problem object).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from app.http.chat_schemas import MemoryChangeOut, UsageOut, used_concepts
from app.http.serving.chat import ChatEvents, ConceptsEvent, Done, MemoryChanges, TextDelta
from app.http.streaming import event_stream, sse


def rapport_sse(events: ChatEvents) -> StreamingResponse:
    return event_stream(_render(events), on_error=lambda problem: sse(problem, "error"))


async def _render(events: ChatEvents) -> AsyncIterator[bytes]:
    async for event in events:
        match event:
            case ConceptsEvent(used=used):
                concepts = [concept.model_dump() for concept in used_concepts(used)]
                yield sse({"concepts": concepts}, "concepts")
            case TextDelta(text=text):
                yield sse({"text": text}, "delta")
            case MemoryChanges(changes=changes):
                listed = [MemoryChangeOut.from_change(c).model_dump() for c in changes]
                yield sse({"memory": events.memory, "memory_changes": listed}, "memory")
            case Done(generation=generation):
                done = {
                    "answer": generation.text,
                    "finish_reason": generation.finish_reason,
                    "usage": UsageOut.from_generation(generation).model_dump(),
                    "model": events.model,
                }
                yield sse(done, "done")
