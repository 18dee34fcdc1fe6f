"""Typed bodies of rapport's HTTP API, field for field as its OpenAPI schema has them.

Answers ignore fields this client does not know yet, so a newer server does not break
an older client; the repository's tests check that the two never differ.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Box = tuple[int, int, int, int]
# How much a chat may do with the user's concepts: nothing (off), read them (read, the
# default), suggest changes (propose) or make them (auto).
MemoryMode = Literal["off", "read", "propose", "auto"]


class Model(BaseModel):
    """An answer of the server (immutable)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Body(BaseModel):
    """A request body; fields left None are not sent."""

    model_config = ConfigDict(extra="forbid")


class Image(Model):
    id: str
    width: int
    height: int
    media_type: str


class NegativePage(Model):
    """A concept's negatives: photos the user said are not it, oldest first."""

    items: list[Image]


class ConceptBrief(Model):
    id: str
    name: str
    description: str
    category: str | None


class LooksLike(Model):
    """Another concept of the same user whose photos look like this one's."""

    id: str
    name: str
    score: float


class Concept(ConceptBrief):
    images: list[Image]
    created_at: datetime
    updated_at: datetime
    looks_like: LooksLike | None = None


class ConceptPage(Model):
    items: list[Concept]
    next_cursor: str | None


class Match(Model):
    concept: ConceptBrief
    score: float
    source: Literal["image", "text"]
    box: Box | None
    present: bool | None
    threshold: float | None


class Retrieval(Model):
    matches: list[Match]


class User(Model):
    user_id: str
    concepts: int
    photos: int
    bytes: int
    created_at: datetime
    changed_at: datetime
    memory: MemoryMode
    memory_deletes: bool


class UserPage(Model):
    items: list[User]
    next_cursor: str | None


class UsedConcept(ConceptBrief):
    score: float
    source: Literal["image", "text"]
    # Recognised in the photo; False: only named in the question; None: no photo sent.
    present: bool | None = None


class Usage(Model):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class MemoryChange(Model):
    """A change to the user's concepts that a chat made, or proposed (``applied`` false);
    ``event_id`` names its history event, for ``undo``."""

    action: Literal["created", "updated", "deleted"]
    applied: bool
    concept: dict[str, str | None]
    tool: str
    event_id: str | None
    proposal: dict[str, Any] | None = None


class ChatAnswer(Model):
    answer: str
    concepts: list[UsedConcept]
    usage: Usage
    model: str
    finish_reason: str
    prompt: list[dict[str, Any]] | None = None
    memory: MemoryMode
    memory_changes: list[MemoryChange]


class Region(Model):
    box: Box
    concept: ConceptBrief | None
    score: float | None


class Score(Model):
    concept: ConceptBrief
    score: float
    box: Box
    threshold: float | None
    kept: bool


class PromptPart(Model):
    type: Literal["text", "image"]
    text: str | None = None
    photo: Literal["query", "reference"] | None = None
    concept_id: str | None = None
    image_id: str | None = None


class PromptMessage(Model):
    role: str
    parts: list[PromptPart]


class Playground(Model):
    width: int | None
    height: int | None
    top_k: int
    min_score: float | None
    regions: list[Region]
    scores: list[Score]
    named: list[ConceptBrief]
    prompt_concepts: list[ConceptBrief]
    prompt: list[PromptMessage]
    generator: str


class ConceptState(Model):
    """A concept as it was before or after a change."""

    name: str
    description: str
    category: str | None
    photos: list[str]


class HistoryEvent(Model):
    """One change to a user's concepts; ``undoable``: made by chat and not undone yet."""

    id: str
    time: datetime
    source: Literal["api", "import", "chat", "undo"]
    action: Literal["created", "updated", "deleted"]
    concept_id: str | None
    before: ConceptState | None
    after: ConceptState | None
    undoes: str | None = None
    undone_at: datetime | None = None
    undoable: bool


class HistoryPage(Model):
    items: list[HistoryEvent]
    next_cursor: str | None


class Undo(Model):
    undone: str
    changes: list[HistoryEvent]


class Problem(Model):
    type: str = "about:blank"
    title: str
    status: int
    detail: str


class Tenant(Model):
    name: str
    created_at: datetime


class ApiKey(Model):
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewApiKey(Model):
    key: str = Field(description="shown once; only its keyed hash is stored")
    prefix: str
    expires_at: datetime | None


class TenantUsage(Model):
    users: int
    concepts: int
    photos: int
    bytes: int


class Readiness(Model):
    """``/readyz``: ready, or which dependency is not."""

    model_config = ConfigDict(extra="allow", frozen=True)
    status: str

    @property
    def ready(self) -> bool:
        return self.status == "ready"


# Request bodies.


class ImageURL(Body):
    url: str
    detail: str | None = None


class ContentPart(Body):
    """A part of a chat message: text, or a photo (``image_url``: a data URL or http(s))."""

    type: Literal["text", "image_url", "input_text", "input_image"]
    text: str | None = None
    image_url: ImageURL | str | None = None


class ChatMessage(Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class ChatRequest(Body):
    messages: list[ChatMessage] | None = None
    question: str | None = None
    image: str | None = None
    top_k: int | None = None
    min_score: float | None = None
    max_new_tokens: int | None = None
    temperature: float = 0.0
    stream: bool = False
    memory: MemoryMode | None = None


class PlaygroundRequest(Body):
    question: str
    image: str | None = None
    top_k: int | None = None
    min_score: float | None = None


class RetrieveRequest(Body):
    image: str | None = None
    text: str | None = None
    top_k: int | None = None
    min_score: float | None = None


class ConceptPatch(Body):
    name: str | None = None
    description: str | None = None
    category: str | None = None


class UserPatch(Body):
    memory: MemoryMode | None = None
    memory_deletes: bool | None = None


class TenantIn(Body):
    name: str


class KeyIn(Body):
    expires_at: datetime | None = None


# The server's name for each model's schema (components/schemas in its OpenAPI).
SERVER_SCHEMAS: dict[type[BaseModel], str] = {
    Image: "ImageOut",
    NegativePage: "NegativePage",
    ConceptBrief: "ConceptBrief",
    LooksLike: "LooksLikeOut",
    Concept: "ConceptOut",
    ConceptPage: "ConceptPage",
    Match: "MatchOut",
    Retrieval: "RetrieveOut",
    User: "UserOut",
    UserPage: "UserPage",
    UsedConcept: "UsedConcept",
    Usage: "app__http__chat_schemas__UsageOut",
    MemoryChange: "MemoryChangeOut",
    ChatAnswer: "ChatOut",
    Region: "RegionOut",
    Score: "ScoreOut",
    PromptPart: "PromptPartOut",
    PromptMessage: "PromptMessageOut",
    Playground: "PlaygroundOut",
    ConceptState: "ConceptState",
    HistoryEvent: "HistoryEventOut",
    HistoryPage: "HistoryPageOut",
    Undo: "UndoOut",
    Problem: "Problem",
    Tenant: "TenantOut",
    ApiKey: "KeyOut",
    NewApiKey: "NewKeyOut",
    TenantUsage: "app__http__routes__admin_usage__UsageOut",
    ImageURL: "ImageURL",
    ContentPart: "ContentPart",
    ChatMessage: "ChatMessage",
    ChatRequest: "ChatRequest",
    PlaygroundRequest: "PlaygroundRequest",
    ConceptPatch: "ConceptPatch",
    UserPatch: "UserPatch",
    TenantIn: "TenantIn",
    KeyIn: "KeyIn",
}
