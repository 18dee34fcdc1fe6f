"""Whose data a use case acts on: one end user of one tenant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserScope:
    """One end user (the app's own id for them) within one tenant. Every read and write
    of concepts and photos is confined to it; the user row may not exist yet."""

    tenant_id: int
    external_user_id: str
