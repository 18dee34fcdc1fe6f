"""Bodies of the chat endpoints: rapport's own /chat and the OpenAI-compatible one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.http.schemas import ConceptBrief, MinScore, TopK
from app.usecases.chat import ChatAnswer, PreparedChat
from app.usecases.chat_input import ChatInput, RawTurn
from app.usecases.memory_modes import MemoryMode
from app.usecases.memory_tools import MemoryChange
from app.usecases.retrieve import Match
from retrieval.generators import Generation

MaxNewTokens = Annotated[int, Field(ge=1)]
# Content parts of one message: its photos (at most RAPPORT_MAX_IMAGES_PER_REQUEST in the
# whole request) and texts. Counted as the body is validated, before any part is read.
MAX_CONTENT_PARTS = 100
Memory = Annotated[
    MemoryMode,
    Field(
        description="off: no retrieval, nothing written; read (the default): the user's "
        "concepts in the prompt; propose: changes suggested, not applied; auto: changes "
        "applied. Never wider than the user's own mode (PATCH /v1/users/{user_id})"
    ),
]
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    """An OpenAI content part: text, or a photo as a data URL, bare base64 or an http(s) URL."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "image_url", "input_text", "input_image"]
    text: str | None = None
    image_url: ImageURL | str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS)] | None = None

    def to_raw(self) -> RawTurn:
        """The message's texts and photo references, in order (nothing fetched or decoded)."""
        texts: list[str] = []
        photos: list[str] = []
        parts = (
            [ContentPart(type="text", text=self.content)]
            if isinstance(self.content, str)
            else (self.content or [])
        )
        for part in parts:
            if part.type in ("text", "input_text"):
                texts.append(part.text or "")
            else:
                url = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
                photos.append(url or "")
        role = "system" if self.role == "developer" else self.role
        return RawTurn(role=role, texts=tuple(texts), photos=tuple(photos))


class ChatRequest(BaseModel):
    """A conversation (OpenAI-style ``messages``) or the short form ``question`` + ``image``."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=200)
    question: str | None = Field(default=None, max_length=8000)
    image: str | None = Field(default=None, description="base64, a data URL or an http(s) URL")
    top_k: TopK | None = None
    min_score: MinScore | None = None
    max_new_tokens: MaxNewTokens | None = None
    temperature: Temperature = 0.0
    stream: bool = False
    memory: Memory | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ChatRequest:
        if (self.messages is None) == (self.question is None):
            raise ValueError("send either messages or question")
        if self.image is not None and self.messages is not None:
            raise ValueError("image goes with question; in messages, use image_url parts")
        return self

    def to_input(self) -> ChatInput:
        """The request's turns and options (photo references stay strings)."""
        if self.messages is not None:
            raw = tuple(message.to_raw() for message in self.messages)
        else:
            photos = (self.image,) if self.image else ()
            raw = (RawTurn(role="user", texts=(self.question or "",), photos=photos),)
        return ChatInput(
            raw,
            top_k=self.top_k,
            min_score=self.min_score,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            memory=self.memory,
        )


class UsedConcept(ConceptBrief):
    score: float
    source: Literal["image", "text"]
    present: bool | None = Field(
        default=None,
        description="recognised in the photo (true: sure; false: only named in the question, "
        "a candidate the prompt asks the model to check; null: no photo was sent)",
    )

    @classmethod
    def from_match(cls, match: Match) -> UsedConcept:
        return cls(
            **ConceptBrief.fields_of(match.concept),
            score=round(match.score, 6),
            source=match.source,
            present=match.present,
        )


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def from_generation(cls, generation: Generation) -> UsageOut:
        usage = generation.usage
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )


class MemoryChangeOut(BaseModel):
    """A change to the user's concepts that the chat made, or proposed (``applied`` false)."""

    action: Literal["created", "updated", "deleted"]
    applied: bool
    concept: dict[str, str | None] = Field(description="the concept's id (none yet) and name")
    tool: str
    event_id: str | None = Field(description="its history event, to undo it")
    proposal: dict[str, Any] | None = Field(
        default=None, description="the fields proposed, for the app to apply through the API"
    )

    @classmethod
    def from_change(cls, change: MemoryChange) -> MemoryChangeOut:
        return cls(
            action=change.action,
            applied=change.applied,
            concept={"id": change.concept_id, "name": change.name},
            tool=change.tool,
            event_id=change.event_id,
            proposal=change.proposal,
        )


def memory_changes(prepared: PreparedChat) -> list[MemoryChangeOut]:
    changes = prepared.tools.changes if prepared.tools is not None else []
    return [MemoryChangeOut.from_change(change) for change in changes]


class ChatOut(BaseModel):
    answer: str
    concepts: list[UsedConcept]
    usage: UsageOut
    model: str
    finish_reason: str
    prompt: list[dict[str, Any]] | None = Field(
        default=None,
        description="the personalized prompt as OpenAI messages, when no MLLM is configured",
    )
    memory: MemoryMode = Field(description="the memory mode this answer had")
    memory_changes: list[MemoryChangeOut] = Field(
        description="what the chat changed (auto) or proposed (propose)"
    )

    @classmethod
    def from_answer(cls, answer: ChatAnswer) -> ChatOut:
        return cls(
            answer=answer.generation.text,
            concepts=used_concepts(answer.prepared.used),
            usage=UsageOut.from_generation(answer.generation),
            model=answer.model,
            finish_reason=answer.generation.finish_reason,
            prompt=answer.prompt_messages,
            memory=answer.prepared.memory,
            memory_changes=memory_changes(answer.prepared),
        )


def used_concepts(matches: Iterable[Match]) -> list[UsedConcept]:
    return [UsedConcept.from_match(match) for match in matches]
