"""What the history routes answer: a user's changes to their concepts, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.storage.db.models import MemoryEvent


class ConceptState(BaseModel):
    """A concept as it was before or after a change."""

    name: str
    description: str
    category: str | None
    photos: list[str] = Field(description="the ids of its photos")


class HistoryEventOut(BaseModel):
    id: str
    time: datetime
    source: Literal["api", "import", "chat", "undo"]
    action: Literal["created", "updated", "deleted"]
    concept_id: str | None
    before: ConceptState | None = Field(description="None: the concept did not exist")
    after: ConceptState | None = Field(description="None: the concept is deleted")
    undoes: str | None = Field(default=None, description="the event this change undid")
    undone_at: datetime | None = None
    undoable: bool = Field(description="a change made by chat, not undone yet")

    @classmethod
    def from_row(cls, event: MemoryEvent) -> HistoryEventOut:
        return cls(
            id=event.id,
            time=event.created_at,
            source=event.source,  # type: ignore[arg-type]
            action=event.action,  # type: ignore[arg-type]
            concept_id=event.concept_id,
            before=_state(event.before),
            after=_state(event.after),
            undoes=event.undoes,
            undone_at=event.undone_at,
            undoable=event.source == "chat" and event.undone_at is None,
        )


def _state(value: dict[str, Any] | None) -> ConceptState | None:
    return None if value is None else ConceptState(**value)


class HistoryPageOut(BaseModel):
    items: list[HistoryEventOut]
    next_cursor: str | None


class UndoOut(BaseModel):
    undone: str = Field(description="the event undone")
    changes: list[HistoryEventOut] = Field(description="what the undo changed, as events")
