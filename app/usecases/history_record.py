"""Recording a change to a user's concepts in their history, inside the write's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.storage.db.models import Concept, ImageRow, MemoryEvent
from app.storage.repository import history as history_rows
from app.usecases.user_write import UserWrite

Summary = dict[str, Any]


def summary(concept: Concept, images: Sequence[ImageRow]) -> Summary:
    """What the history shows of a concept at one moment: its fields and its photos' ids."""
    return {
        "name": concept.name,
        "description": concept.description,
        "category": concept.category,
        "photos": [image.id for image in images],
    }


def record(
    w: UserWrite,
    *,
    action: str,
    concept_id: str,
    before: Summary | None,
    after: Summary | None,
) -> MemoryEvent:
    """Add the change to the history in ``w``'s transaction: it commits with the change or
    not at all."""
    event = history_rows.add_event(
        session=w.session,
        user_id=w.user_id,
        concept_id=concept_id,
        source=w.source,
        action=action,
        before=before,
        after=after,
        undoes=w.undoes,
    )
    w.events.append(event)
    return event
