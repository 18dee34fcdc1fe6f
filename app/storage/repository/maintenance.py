"""Whole-database reads and repairs for ``rapport doctor``: every photo's blob key,
concepts without photos, vectors without a photo."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from app.storage.db.models import Embedding, ImageRow
from app.storage.repository.users import bump_version

_WITHOUT_IMAGE = ~exists().where(ImageRow.id == Embedding.image_id)


def photo_keys(*, session: Session) -> dict[str, str]:
    """Blob key -> image id of every photo row."""
    return {
        key: image_id for key, image_id in session.execute(select(ImageRow.blob_key, ImageRow.id))
    }


def photos_with_keys(*, session: Session, keys: Sequence[str]) -> list[tuple[str, str]]:
    """(blob key, image id) of the photo rows among ``keys``."""
    query = select(ImageRow.blob_key, ImageRow.id).where(ImageRow.blob_key.in_(keys))
    return [(key, image_id) for key, image_id in session.execute(query)]


def keys_in_use(*, session: Session, keys: Sequence[str]) -> set[str]:
    """The blob keys among ``keys`` that some photo row (of any user) references."""
    return set(session.scalars(select(ImageRow.blob_key).where(ImageRow.blob_key.in_(keys))))


def count_vectors_without_image(*, session: Session) -> int:
    return int(session.scalar(select(func.count(Embedding.id)).where(_WITHOUT_IMAGE)) or 0)


def delete_vectors_without_image(*, session: Session) -> int:
    """Delete every vector whose photo is gone, bumping the version of each owner so that
    cached indexes are rebuilt; how many were deleted."""
    users = session.scalars(select(Embedding.user_id).where(_WITHOUT_IMAGE).distinct())
    for user_id in sorted(users):
        bump_version(session=session, user_id=user_id)
    result = session.execute(delete(Embedding).where(_WITHOUT_IMAGE))
    return int(result.rowcount)  # type: ignore[attr-defined]
