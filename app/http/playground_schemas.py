"""Bodies of the playground: a dry run of /chat that shows each step."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.http.chat_schemas import ChatRequest
from app.http.schemas import ConceptBrief, MinScore, TopK
from app.usecases.chat import ChatQuery
from app.usecases.chat_input import ChatInput
from app.usecases.playground import Preview
from retrieval.prompt import ImagePart, TextPart

Box = tuple[int, int, int, int]


class PlaygroundRequest(BaseModel):
    """A question and, optionally, a photo (base64, a data URL or an http(s) URL)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=8000)
    image: str | None = None
    top_k: TopK | None = None
    min_score: MinScore | None = None

    def to_input(self) -> ChatInput:
        """The question and its photo as a one-turn chat (the photo reference stays a string)."""
        return ChatRequest(
            question=self.question, image=self.image, top_k=self.top_k, min_score=self.min_score
        ).to_input()


class RegionOut(BaseModel):
    box: Box = Field(description="[x0, y0, x1, y1] in the photo's pixels (upright)")
    concept: ConceptBrief | None = Field(description="the concept this region matches best")
    score: float | None


class ScoreOut(BaseModel):
    concept: ConceptBrief
    score: float = Field(description="best cosine similarity over the regions")
    box: Box = Field(description="the region that scored it")
    kept: bool = Field(
        description="retrieval keeps it (present by the decision rule or at least min_score, "
        "within top_k)"
    )


class PromptPartOut(BaseModel):
    type: Literal["text", "image"]
    text: str | None = None
    photo: Literal["query", "reference"] | None = None
    concept_id: str | None = None
    image_id: str | None = Field(default=None, description="the reference photo's id")


class PromptMessageOut(BaseModel):
    role: str
    parts: list[PromptPartOut]


class PlaygroundOut(BaseModel):
    width: int | None = Field(description="the photo's width in pixels, upright")
    height: int | None
    top_k: int
    min_score: float | None = Field(
        description="the fixed threshold used; null: rapport's decision rule (a threshold "
        "per concept, see docs/quality.md)"
    )
    regions: list[RegionOut]
    scores: list[ScoreOut] = Field(description="the best-scoring concepts, best first")
    named: list[ConceptBrief] = Field(description="concepts the question names")
    prompt_concepts: list[ConceptBrief] = Field(description="concepts in the prompt, in order")
    prompt: list[PromptMessageOut] = Field(description="the prompt /chat would send")
    generator: str = Field(description="the configured generator ('none': no answers)")

    @classmethod
    def from_preview(cls, preview: Preview, query: ChatQuery, generator: str) -> PlaygroundOut:
        def brief(concept: object) -> ConceptBrief:
            return ConceptBrief(**ConceptBrief.fields_of(concept))  # type: ignore[arg-type]

        messages = []
        for message in preview.prepared.prompt.messages:
            parts = []
            for part in message.parts:
                if isinstance(part, TextPart):
                    parts.append(PromptPartOut(type="text", text=part.text))
                elif isinstance(part, ImagePart):
                    photo = preview.photos[id(part.image)]
                    parts.append(
                        PromptPartOut(
                            type="image",
                            photo=photo.kind,  # type: ignore[arg-type]
                            concept_id=photo.concept_id,
                            image_id=photo.image_id,
                        )
                    )
            messages.append(PromptMessageOut(role=message.role, parts=parts))
        kept = set(preview.found)
        return cls(
            width=preview.width,
            height=preview.height,
            top_k=query.top_k,
            min_score=query.min_score,
            regions=[
                RegionOut(
                    box=r.box,
                    concept=brief(r.concept) if r.concept else None,
                    score=None if r.score is None else round(r.score, 6),
                )
                for r in preview.regions
            ],
            scores=[
                ScoreOut(
                    concept=brief(s.concept),
                    score=round(s.score, 6),
                    box=s.box,
                    kept=s.concept.id in kept,
                )
                for s in preview.scores
            ],
            named=[brief(c) for c in preview.named],
            prompt_concepts=[brief(m.concept) for m in preview.prepared.used],
            prompt=messages,
            generator=generator,
        )
