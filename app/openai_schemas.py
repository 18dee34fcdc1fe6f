"""OpenAI chat-completions bodies, as OpenAI clients send and expect them."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.chat_schemas import ChatMessage, MaxNewTokens, Temperature, UsageOut, UsedConcept
from app.schemas import MinScore, TopK
from app.usecases.chat import ChatQuery
from app.usecases.chat_input import ChatDefaults


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
    user: (
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")] | None
    ) = None
    top_k: TopK | None = None
    min_score: MinScore | None = None

    def to_query(self, defaults: ChatDefaults) -> ChatQuery:
        return defaults.query(
            [message.to_raw() for message in self.messages],
            top_k=self.top_k,
            min_score=self.min_score,
            max_new_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


class RapportInfo(BaseModel):
    concepts: list[UsedConcept]


class Completion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut
    rapport: RapportInfo


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


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
