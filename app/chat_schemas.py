"""Bodies of the chat endpoints: rapport's own /chat and the OpenAI-compatible one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.remote_photos import RemotePhotoPolicy, fetch_photo
from app.schemas import ConceptBrief, MinScore, TopK, decode_base64_image
from app.usecases.chat import ChatAnswer, ChatQuery, PreparedChat
from app.usecases.retrieve import Match
from retrieval import ChatTurn, Generation, GenerationOptions, ImageLimits, decode_image
from retrieval.errors import InvalidRequest

if TYPE_CHECKING:
    from app.services import Services

MaxNewTokens = Annotated[int, Field(ge=1)]
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]


@dataclass(frozen=True)
class ChatDefaults:
    """What a chat request leaves unsaid, from the service's settings."""

    top_k: int
    min_score: float
    max_new_tokens: int
    limits: ImageLimits
    max_images: int
    remote: RemotePhotoPolicy

    @classmethod
    def of(cls, services: Services) -> ChatDefaults:
        settings = services.settings
        return cls(
            top_k=settings.default_top_k,
            min_score=services.default_min_score,
            max_new_tokens=settings.default_max_new_tokens,
            limits=settings.image_limits(),
            max_images=settings.max_images_per_request,
            remote=RemotePhotoPolicy.from_settings(settings),
        )

    def query(
        self,
        turns: list[ChatTurn],
        *,
        top_k: int | None,
        min_score: float | None,
        max_new_tokens: int | None,
        temperature: float | None,
    ) -> ChatQuery:
        return ChatQuery(
            turns=turns,
            top_k=top_k or self.top_k,
            min_score=self.min_score if min_score is None else min_score,
            options=GenerationOptions(
                max_new_tokens=max_new_tokens or self.max_new_tokens,
                temperature=temperature or 0.0,
            ),
        )


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
    content: str | list[ContentPart] | None = None

    def to_turn(self, limits: ImageLimits, remote: RemotePhotoPolicy) -> ChatTurn:
        texts: list[str] = []
        images: list[Image.Image] = []
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
                images.append(load_photo(url or "", limits, remote))
        role = "system" if self.role == "developer" else self.role
        return ChatTurn(role=role, text="\n".join(t for t in texts if t), images=tuple(images))


def load_photo(reference: str, limits: ImageLimits, remote: RemotePhotoPolicy) -> Image.Image:
    """A photo given as base64, a data URL, or an http(s) URL (fetched under ``remote``).

    Blocking (a fetch may take up to ``remote.timeout_s``): call it off the event loop.
    """
    if reference[:8].lower().startswith(("http://", "https://")):
        data = fetch_photo(reference, remote)
    else:
        data = decode_base64_image(reference)
    return decode_image(data, limits).image


def turns_from(messages: list[ChatMessage], defaults: ChatDefaults) -> list[ChatTurn]:
    turns = [message.to_turn(defaults.limits, defaults.remote) for message in messages]
    count = sum(len(turn.images) for turn in turns)
    if count > defaults.max_images:
        raise InvalidRequest(
            f"{count} photos in one conversation; the limit is {defaults.max_images}"
        )
    return turns


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

    @model_validator(mode="after")
    def _one_form(self) -> ChatRequest:
        if (self.messages is None) == (self.question is None):
            raise ValueError("send either messages or question")
        if self.image is not None and self.messages is not None:
            raise ValueError("image goes with question; in messages, use image_url parts")
        return self

    def to_query(self, defaults: ChatDefaults) -> ChatQuery:
        if self.messages is not None:
            turns = turns_from(self.messages, defaults)
        else:
            photo = load_photo(self.image, defaults.limits, defaults.remote) if self.image else None
            turns = [
                ChatTurn(role="user", text=self.question or "", images=(photo,) if photo else ())
            ]
        return defaults.query(
            turns,
            top_k=self.top_k,
            min_score=self.min_score,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
        )


class UsedConcept(ConceptBrief):
    score: float
    source: Literal["image", "text"]

    @classmethod
    def from_match(cls, match: Match) -> UsedConcept:
        return cls(
            **ConceptBrief.fields_of(match.concept),
            score=round(match.score, 6),
            source=match.source,
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

    @classmethod
    def from_answer(
        cls, answer: ChatAnswer, *, model: str, prompt: list[dict[str, Any]] | None
    ) -> ChatOut:
        return cls(
            answer=answer.generation.text,
            concepts=concepts_of(answer.prepared),
            usage=UsageOut.from_generation(answer.generation),
            model=model,
            finish_reason=answer.generation.finish_reason,
            prompt=prompt,
        )


def concepts_of(prepared: PreparedChat) -> list[UsedConcept]:
    return [UsedConcept.from_match(match) for match in prepared.used]
