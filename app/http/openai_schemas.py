"""OpenAI chat-completions bodies, as OpenAI clients send and expect them."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.domain.ids import USER_ID
from app.http.chat_schemas import (
    ChatMessage,
    MaxNewTokens,
    Memory,
    MemoryChangeOut,
    Temperature,
    UsageOut,
    UsedConcept,
    memory_changes,
    used_concepts,
)
from app.http.schemas import MinScore, TopK
from app.usecases.chat import ChatAnswer
from app.usecases.chat_input import ChatInput
from app.usecases.memory_modes import MemoryMode


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """OpenAI's request; ``user`` is the end user whose concepts personalize the answer.

    Unknown OpenAI fields are accepted and ignored. ``top_k`` and ``min_score``
    (rapport's own, e.g. through the client's ``extra_body``) tune retrieval.
    """

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxNewTokens | None = None
    max_completion_tokens: MaxNewTokens | None = None
    temperature: Temperature | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    user: Annotated[str, USER_ID.field()] | None = None
    top_k: TopK | None = None
    min_score: MinScore | None = None
    memory: Memory | None = None

    def to_input(self) -> ChatInput:
        """The request's turns and options (photo references stay strings)."""
        return ChatInput(
            tuple(message.to_raw() for message in self.messages),
            top_k=self.top_k,
            min_score=self.min_score,
            max_new_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            memory=self.memory,
        )

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk (``stream_options.include_usage``)."""
        return bool(self.stream_options and self.stream_options.include_usage)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


class RapportInfo(BaseModel):
    concepts: list[UsedConcept]
    memory: MemoryMode
    memory_changes: list[MemoryChangeOut]


class Completion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut
    rapport: RapportInfo

    @classmethod
    def from_answer(cls, answer: ChatAnswer) -> Completion:
        generation = answer.generation
        return cls(
            id=completion_id(),
            created=now(),
            model=answer.model,
            choices=[
                Choice(
                    message=AssistantMessage(content=generation.text),
                    finish_reason=generation.finish_reason,
                )
            ],
            usage=UsageOut.from_generation(generation),
            rapport=RapportInfo(
                concepts=used_concepts(answer.prepared.used),
                memory=answer.prepared.memory,
                memory_changes=memory_changes(answer.prepared),
            ),
        )


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rapport"


class ModelList(BaseModel):
    """What ``GET /v1/models`` lists: the models a completion's ``model`` may name."""

    object: Literal["list"] = "list"
    data: list[ModelOut]

    @classmethod
    def of(cls, generator_model: str, created: int) -> ModelList:
        # The none generator answers no completion, so it serves no model.
        models = [generator_model] if generator_model else []
        return cls(data=[ModelOut(id=model, created=created) for model in models])
