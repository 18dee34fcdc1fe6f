"""An app's end users: listing them with their counts, and erasing one with everything of theirs."""

from __future__ import annotations

import logging

from app.domain.blob_layout import BlobLayout
from app.domain.errors import BlobStoreUnavailable, NotFound
from app.domain.scope import UserScope
from app.services import Services
from app.storage.repository import users as user_rows
from app.storage.repository.users import UserCounts

logger = logging.getLogger(__name__)


def erase_user(services: Services, *, scope: UserScope) -> None:
    """Delete every concept, photo, vector and blob of the user. Erasing nobody is fine."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            return
        user_id = user.id
        user_rows.delete_user(session=session, user_id=user_id)
        session.commit()
    services.user_index_cache.discard(services.index_key(user_id))
    # User ids are never reused, so nothing can be writing into this folder any more.
    namespace = BlobLayout(tenant_id=scope.tenant_id, user_id=user_id).namespace
    try:
        services.blobs.delete_namespace(namespace)
    except BlobStoreUnavailable:
        # The user is gone (committed): a retry would find nobody. What is left of the
        # photos is unreferenced, and `rapport doctor --repair` deletes it.
        logger.error(
            "photos of erased user %s left in the store: run `rapport doctor --repair`", namespace
        )


def list_users(
    services: Services, *, tenant_id: int, limit: int, after: str | None, prefix: str | None
) -> tuple[list[UserCounts], str | None]:
    """One page of the app's users by id (those starting with ``prefix``), with their
    counts, and the cursor of the next page (None at the end)."""
    with services.sessions() as session:
        users = user_rows.list_users(
            session=session, tenant_id=tenant_id, limit=limit + 1, after=after, prefix=prefix
        )
    page = users[:limit]
    return page, (page[-1].external_id if len(users) > limit else None)


def get_user(services: Services, *, scope: UserScope) -> UserCounts:
    """One user with their counts; NotFound for an id the app has no user with."""
    with services.sessions() as session:
        found = user_rows.list_users(
            session=session,
            tenant_id=scope.tenant_id,
            limit=1,
            after=None,
            prefix=None,
            exact=scope.external_user_id,
        )
    if not found:
        raise NotFound("no such user")
    return found[0]
