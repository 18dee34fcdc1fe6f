"""History rows of one user: every change to their concepts, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.storage.db.models import MemoryEvent


def add_event(
    *,
    session: Session,
    user_id: int,
    concept_id: str | None,
    source: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    undoes: str | None = None,
) -> MemoryEvent:
    """Add an event to the caller's (user-locked) transaction, flushed so it has its id."""
    event = MemoryEvent(
        user_id=user_id,
        concept_id=concept_id,
        source=source,
        action=action,
        before=before,
        after=after,
        undoes=undoes,
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    *, session: Session, user_id: int, limit: int, before_id: str | None = None
) -> list[MemoryEvent]:
    """Up to ``limit`` events of the user, newest first, after the event ``before_id`` in
    that order when given (events of one millisecond keep their order: the clock's
    microseconds, then the id)."""
    query = select(MemoryEvent).where(MemoryEvent.user_id == user_id)
    if before_id is not None:
        cursor = get_event(session=session, user_id=user_id, event_id=before_id)
        if cursor is None:
            return []
        query = query.where(
            or_(
                MemoryEvent.created_at < cursor.created_at,
                and_(MemoryEvent.created_at == cursor.created_at, MemoryEvent.id < cursor.id),
            )
        )
    order = (MemoryEvent.created_at.desc(), MemoryEvent.id.desc())
    return list(session.scalars(query.order_by(*order).limit(limit)))


def every_event(*, session: Session, user_id: int) -> list[MemoryEvent]:
    """All of the user's events, oldest first (for an export)."""
    query = select(MemoryEvent).where(MemoryEvent.user_id == user_id)
    return list(session.scalars(query.order_by(MemoryEvent.created_at, MemoryEvent.id)))


def get_event(*, session: Session, user_id: int, event_id: str) -> MemoryEvent | None:
    """The user's event ``event_id``; None for another user's, as for a missing one."""
    return session.scalar(
        select(MemoryEvent).where(MemoryEvent.user_id == user_id, MemoryEvent.id == event_id)
    )


def mark_undone(*, session: Session, event_id: str, at: datetime) -> None:
    session.execute(update(MemoryEvent).where(MemoryEvent.id == event_id).values(undone_at=at))
