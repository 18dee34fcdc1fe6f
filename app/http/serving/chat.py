"""The chat service: one chat flow for both chat routes, whole or as typed events.

The request's photos are read and the prompt is built in the thread pool (both
block); a stream's first delta is produced before the response starts, so a
backend that fails early is still answered with an HTTP error status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from app.domain.scope import UserScope
from app.http.streaming import StartedStream
from app.services import Services
from app.usecases.chat import (
    ChatAnswer,
    ChatQuery,
    PreparedChat,
    answer_chat,
    require_generator,
    stream_chat,
)
from app.usecases.chat_input import ChatInput, read_query
from app.usecases.memory_tools import MemoryChange
from app.usecases.retrieve import Match
from retrieval.generators import Generation


@dataclass(frozen=True)
class ConceptsEvent:
    """The first event: the concepts in the prompt, in its order."""

    used: tuple[Match, ...]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class MemoryChanges:
    """Before Done, in propose and auto: what the chat changed or proposed."""

    changes: tuple[MemoryChange, ...]


@dataclass(frozen=True)
class Done:
    """The last event: the whole answer, its usage and why it stopped."""

    generation: Generation


ChatEvent = ConceptsEvent | TextDelta | MemoryChanges | Done


class ChatEvents:
    """An answer being streamed by ``model``: a ConceptsEvent, TextDeltas, then Done.

    Its first delta is already produced; stopping early stops the generation.
    """

    def __init__(self, prepared: PreparedChat, model: str, started: StartedStream) -> None:
        self.used = tuple(prepared.used)
        self.memory = prepared.memory
        self.model = model
        self._tools = prepared.tools
        self._started = started

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        yield ConceptsEvent(self.used)
        async for item in self._started.items():
            if not isinstance(item, Generation):
                yield TextDelta(item)
                continue
            if self._tools is not None:
                yield MemoryChanges(tuple(self._tools.changes))
            yield Done(item)


@dataclass(frozen=True)
class ChatServing:
    """Chats of one caller about one end user's concepts (none when the user is None).

    ``generator_required``: refuse (501) when no MLLM is configured, before any
    work, as OpenAI's protocol has no answer without one.
    """

    services: Services
    scope: UserScope | None
    generator_required: bool = False

    async def complete(self, request: ChatInput) -> ChatAnswer:
        """The whole answer."""
        query = await self._query(request)
        return await run_in_threadpool(
            answer_chat,
            self.services,
            self.scope,
            query=query,
        )

    async def stream(self, request: ChatInput) -> ChatEvents:
        """The answer as events; errors up to its first delta raise here."""
        query = await self._query(request)
        prepared, stream = await run_in_threadpool(
            stream_chat,
            self.services,
            self.scope,
            query=query,
        )
        on_stop = prepared.tools.stop if prepared.tools is not None else None
        started = await StartedStream.start(stream, on_stop=on_stop)
        return ChatEvents(prepared, self.services.generator.model, started)

    async def _query(self, request: ChatInput) -> ChatQuery:
        if self.generator_required:
            require_generator(self.services)
        owner = self.scope.tenant_id if self.scope else None
        return await run_in_threadpool(read_query, self.services, request, owner)
