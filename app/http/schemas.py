"""Request and response bodies of the HTTP API (separate from the ORM tables)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.domain.text_fields import Category, Description, Name
from app.storage.db.models import Concept, ImageRow
from app.storage.repository.concepts import ConceptSummary
from app.storage.repository.users import UserCounts
from app.usecases.concepts import ConceptChanges, ConceptView
from app.usecases.memory_modes import DEFAULT_MODE, MemoryMode
from app.usecases.photo_policy import decode_base64_image
from app.usecases.retrieve import Match, RetrieveQuery

QueryText = Annotated[str, Field(min_length=1, max_length=4000)]
TopK = Annotated[int, Field(ge=1, le=100)]
MinScore = Annotated[float, Field(ge=-1.0, le=1.0)]


class ImageOut(BaseModel):
    id: str
    width: int
    height: int
    media_type: str


class NegativePage(BaseModel):
    """A concept's negatives: photos the user said are not it (oldest first)."""

    items: list[ImageOut]

    @classmethod
    def from_rows(cls, rows: Sequence[ImageRow]) -> NegativePage:
        return cls(
            items=[
                ImageOut(id=r.id, width=r.width, height=r.height, media_type=r.media_type)
                for r in rows
            ]
        )


class ConceptBrief(BaseModel):
    id: str
    name: str
    description: str
    category: str | None

    @staticmethod
    def fields_of(concept: Concept | ConceptSummary) -> dict[str, Any]:
        """A concept row's brief fields, for this model and those that extend it."""
        return {
            "id": concept.id,
            "name": concept.name,
            "description": concept.description,
            "category": concept.category,
        }


class LooksLikeOut(BaseModel):
    """Another concept of the same user whose photos score at least the threshold
    against this one's: photos of either may be retrieved as the other."""

    id: str
    name: str
    score: float = Field(description="best cosine similarity between a photo of each")


class ConceptOut(ConceptBrief):
    images: list[ImageOut]
    created_at: datetime
    updated_at: datetime
    looks_like: LooksLikeOut | None = Field(
        default=None,
        description="with ?include=looks_like on a read (always null otherwise): set when "
        "this concept's photos look like another concept's (RAPPORT_LOOKS_LIKE_MIN_SCORE); "
        "add a distinguishing photo or description",
    )

    @classmethod
    def from_view(cls, view: ConceptView) -> ConceptOut:
        concept = view.concept
        return cls(
            **ConceptBrief.fields_of(concept),
            images=[
                ImageOut(id=i.id, width=i.width, height=i.height, media_type=i.media_type)
                for i in view.images
            ],
            created_at=concept.created_at,
            updated_at=concept.updated_at,
            looks_like=(
                None
                if view.looks_like is None
                else LooksLikeOut(
                    id=view.looks_like.concept_id,
                    name=view.looks_like.name,
                    score=view.looks_like.score,
                )
            ),
        )


class ConceptPage(BaseModel):
    items: list[ConceptOut]
    next_cursor: str | None


class ConceptPatch(BaseModel):
    """Fields to change; absent fields stay as they are. An empty category clears it."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    category: Category | None = None

    def to_changes(self) -> ConceptChanges:
        return ConceptChanges(name=self.name, description=self.description, category=self.category)


class RetrieveJSON(BaseModel):
    """A retrieval with the photo inline: base64, or a data URL (data:image/...;base64,...)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["image"]}, {"required": ["text"]}]},
    )

    image: str | None = None
    text: QueryText | None = None
    top_k: TopK | None = None
    min_score: MinScore | None = None

    def to_query(
        self, *, default_top_k: int, default_min_score: float | None, max_image_bytes: int
    ) -> RetrieveQuery:
        """The query, with the photo decoded from base64 (blocking for a large one)."""
        image = self.image
        return RetrieveQuery(
            image=None if image is None else decode_base64_image(image, max_bytes=max_image_bytes),
            text=self.text,
            top_k=self.top_k or default_top_k,
            min_score=self.min_score if self.min_score is not None else default_min_score,
        )


class MatchOut(BaseModel):
    concept: ConceptBrief
    score: float
    source: Literal["image", "text"]
    box: tuple[int, int, int, int] | None = Field(
        description="where the concept was seen, [x0, y0, x1, y1] in the photo's pixels; "
        "null for the whole photo or a text match"
    )
    present: bool | None = Field(
        description="whether the concept is seen in the photo: by rapport's decision rule, or "
        "score >= min_score when the request (or RAPPORT_MIN_SCORE) sets one; null when no "
        "photo was sent"
    )
    threshold: float | None = Field(
        description="the score this concept needed to be present (its own under the decision "
        "rule, or min_score); null when no photo was sent or its photos cannot decide"
    )

    @classmethod
    def from_match(cls, match: Match) -> MatchOut:
        return cls(
            concept=ConceptBrief(**ConceptBrief.fields_of(match.concept)),
            score=round(match.score, 6),
            source=match.source,
            box=match.box,
            present=match.present,
            threshold=None if match.threshold is None else round(match.threshold, 6),
        )


class RetrieveOut(BaseModel):
    matches: list[MatchOut]

    @classmethod
    def from_matches(cls, matches: list[Match]) -> RetrieveOut:
        return cls(matches=[MatchOut.from_match(m) for m in matches])


class UserOut(BaseModel):
    """One end user of the app, with what they store."""

    user_id: str
    concepts: int
    photos: int
    bytes: int = Field(description="bytes of their photos, as uploaded")
    created_at: datetime
    changed_at: datetime = Field(
        description="last change to one of their concepts or photos (creation if none)"
    )
    memory: MemoryMode = Field(description="the widest memory mode of their chats")
    memory_deletes: bool = Field(description="whether memory auto may forget a concept")

    @classmethod
    def from_counts(cls, counts: UserCounts) -> UserOut:
        return cls(
            user_id=counts.external_id,
            concepts=counts.concepts,
            photos=counts.photos,
            bytes=counts.bytes,
            created_at=counts.created_at,
            changed_at=counts.changed_at,
            memory=counts.memory or DEFAULT_MODE,  # type: ignore[arg-type]
            memory_deletes=counts.memory_deletes,
        )


class UserPatch(BaseModel):
    """The user's memory settings; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    memory: MemoryMode | None = Field(
        default=None, description="the widest mode a chat of theirs may use (default read)"
    )
    memory_deletes: bool | None = Field(
        default=None, description="let memory auto forget a concept (default false)"
    )


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None
