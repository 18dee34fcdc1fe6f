"""Memory modes: how much a chat may do with the user's concepts, per request and per user.

``off``: nothing retrieved, nothing written, none of the user's concepts in the prompt.
``read`` (the default): today's behaviour. ``propose``: the assistant may suggest
changes, returned and not applied. ``auto``: changes are applied (deletes only where
the app allows them for the user). The app sets a user's widest mode; a request can
only narrow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from sqlalchemy import update

from app.domain.scope import UserScope
from app.services import Services
from app.storage.db.models import User
from app.storage.repository import users as user_rows

MemoryMode = Literal["off", "read", "propose", "auto"]
MODES: tuple[MemoryMode, ...] = ("off", "read", "propose", "auto")  # narrowest first
DEFAULT_MODE: MemoryMode = "read"


@dataclass(frozen=True)
class UserMemory:
    """A user's memory settings: the widest mode their chats may use, and whether ``auto``
    may delete a concept."""

    mode: MemoryMode = DEFAULT_MODE
    deletes: bool = False


def narrowed(requested: MemoryMode | None, allowed: MemoryMode) -> MemoryMode:
    """The mode a request gets: what it asks for, never wider than ``allowed``."""
    if requested is None:
        return allowed
    return MODES[min(MODES.index(requested), MODES.index(allowed))]


def user_memory(services: Services, scope: UserScope) -> UserMemory:
    """The user's memory settings (the defaults for a user who does not exist yet)."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
    if user is None:
        return UserMemory()
    return UserMemory(cast(MemoryMode, user.memory or DEFAULT_MODE), bool(user.memory_deletes))


def set_user_memory(
    services: Services, scope: UserScope, *, mode: MemoryMode | None, deletes: bool | None
) -> UserMemory:
    """Change the user's memory settings (creating the user if new); absent ones stay."""
    with services.sessions() as session:
        lock = user_rows.lock_user(
            session=session,
            tenant_id=scope.tenant_id,
            external_id=scope.external_user_id,
            create=True,
        )
        assert lock is not None  # created
        values: dict[str, object] = {}
        if mode is not None:
            values["memory"] = mode
        if deletes is not None:
            values["memory_deletes"] = deletes
        if values:
            session.execute(update(User).where(User.id == lock.user_id).values(**values))
        session.commit()
    return user_memory(services, scope)
