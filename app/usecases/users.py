"""Erasing an end user and everything of theirs."""

from __future__ import annotations

from app import repository as repo
from app.services import Services
from app.usecases.photos import user_namespace


def erase_user(services: Services, *, tenant_id: int, external_user_id: str) -> None:
    """Delete every concept, photo, vector and blob of the user. Erasing nobody is fine."""
    with services.sessions() as session:
        user = repo.find_user(session=session, tenant_id=tenant_id, external_id=external_user_id)
        if user is None:
            return
        user_id = user.id
        repo.delete_user(session=session, user_id=user_id)
        session.commit()
    services.user_index_cache.discard(services.index_key(user_id))
    # User ids are never reused, so nothing can be writing into this folder any more.
    services.blobs.delete_namespace(user_namespace(tenant_id=tenant_id, user_id=user_id))
