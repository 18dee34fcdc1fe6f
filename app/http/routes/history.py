from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.domain.text_fields import CONTROL_FREE
from app.http.deps import ResourceId, ServicesDep, UserScopeDep
from app.http.history_schemas import HistoryEventOut, HistoryPageOut, UndoOut
from app.http.openapi import USER_DATA_ERRORS
from app.usecases.history import list_history, undo_event

router = APIRouter(
    prefix="/v1/users/{user_id}/history", tags=["history"], responses=USER_DATA_ERRORS
)


@router.get("")
def get_history(
    scope: UserScopeDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, pattern=CONTROL_FREE)] = None,
) -> HistoryPageOut:
    """Every change to the user's concepts (API, import, chat, undo), newest first."""
    page = list_history(services, scope=scope, limit=limit, cursor=cursor)
    return HistoryPageOut(
        items=[HistoryEventOut.from_row(e) for e in page.events], next_cursor=page.next_cursor
    )


@router.post("/{event_id}/undo")
def undo(scope: UserScopeDep, event_id: ResourceId, services: ServicesDep) -> UndoOut:
    """Undo one change made by chat (409 for any other, or one undone already)."""
    events = undo_event(services, scope=scope, event_id=event_id)
    return UndoOut(undone=event_id, changes=[HistoryEventOut.from_row(e) for e in events])
