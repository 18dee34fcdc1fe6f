"""A user's history: every change to their concepts, newest first, and undoing one made by chat.

Undo restores the concept as the event's ``before`` shows it, in one write that also
marks the event undone, its changes recorded with source ``undo``: a concept the chat
created is deleted, fields the chat changed get their old values back, photos it
added are removed, and a concept it deleted comes back with its name, description
and category (its photos were deleted with it, so it comes back text-only).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.errors import ConceptNameTaken, EventNotFound, NotUndoable
from app.domain.scope import UserScope
from app.services import Services
from app.storage.db.models import MemoryEvent, utcnow
from app.storage.repository import concepts as concept_rows
from app.storage.repository import history as history_rows
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.usecases.concepts import (
    ConceptChanges,
    add_concept_row,
    change_fields,
    remove_concept,
    remove_images,
)
from app.usecases.history_record import record, summary
from app.usecases.photos import collect_blobs
from app.usecases.user_write import user_write

UNDOABLE_SOURCES = frozenset({"chat"})


@dataclass(frozen=True)
class HistoryPage:
    events: list[MemoryEvent]
    next_cursor: str | None


def list_history(
    services: Services, *, scope: UserScope, limit: int, cursor: str | None
) -> HistoryPage:
    """One page of the user's events, newest first; a user with none (or no such user)
    has an empty history."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            return HistoryPage([], None)
        events = history_rows.list_events(
            session=session, user_id=user.id, limit=limit + 1, before_id=cursor
        )
    page = events[:limit]
    return HistoryPage(page, page[-1].id if len(events) > limit else None)


def undo_event(services: Services, *, scope: UserScope, event_id: str) -> list[MemoryEvent]:
    """Undo the change ``event_id`` made by chat; the events of the undo (none when
    nothing of the change was left to undo).

    EventNotFound for an event the user does not have; NotUndoable for one not made by
    chat, one undone already, or one whose concept changed in a way it cannot restore
    (its name taken by another concept since).
    """
    missing = EventNotFound(f"no history event {event_id!r} for this user")
    with user_write(services, scope, missing=missing, source="undo") as w:
        event = history_rows.get_event(session=w.session, user_id=w.user_id, event_id=event_id)
        if event is None:
            raise missing
        if event.source not in UNDOABLE_SOURCES:
            raise NotUndoable(
                f"only a change made by chat can be undone; this one is {event.source}"
            )
        if event.undone_at is not None:
            raise NotUndoable("this change was undone already")
        w.undoes = event.id
        keys: list[str] = []
        concept = (
            concept_rows.find_concept(session=w.session, concept_id=event.concept_id)
            if event.concept_id
            else None
        )
        if concept is not None and concept.user_id != w.user_id:
            concept = None
        before, after = event.before or {}, event.after or {}
        try:
            if event.action == "created":
                if concept is None:
                    raise NotUndoable("the concept this change created is gone already")
                keys = remove_concept(w, concept)
            elif event.action == "deleted":
                back = add_concept_row(
                    services,
                    w,
                    name=before["name"],
                    description=before.get("description") or "",
                    category=before.get("category"),
                )
                record(
                    w, action="created", concept_id=back.id, before=None, after=summary(back, [])
                )
            else:
                if concept is None:
                    raise NotUndoable("the concept this change updated is gone")
                added = set(after.get("photos") or ()) - set(before.get("photos") or ())
                images = image_rows.images_of(session=w.session, concept_ids=[concept.id])
                doomed = [image for image in images[concept.id] if image.id in added]
                if doomed:
                    keys = remove_images(w, concept, doomed)
                    images = image_rows.images_of(session=w.session, concept_ids=[concept.id])
                fields = ConceptChanges(
                    name=before.get("name"),
                    description=before.get("description"),
                    category=before.get("category") or "",
                )
                if (concept.name, concept.description, concept.category) != (
                    fields.name,
                    fields.description,
                    before.get("category"),
                ):
                    change_fields(w, concept, images[concept.id], fields)
        except ConceptNameTaken as error:
            raise NotUndoable(f"cannot undo: {error.detail}") from None
        history_rows.mark_undone(session=w.session, event_id=event.id, at=utcnow())
    collect_blobs(services, user_id=w.user_id, keys=keys)
    return w.events
