"""Tenant rows and what a tenant stores: usage counts and the bytes its storage quota charges."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.db.models import Concept, Embedding, ImageRow, User

# What one photo costs in storage beyond its bytes: a file takes at least a block,
# and its rows (image, vector) take room of their own.
FILE_BLOCK_BYTES = 4096
PHOTO_ROW_BYTES = 512
VECTOR_ROW_BYTES = 256


def stored_bytes(*, size_bytes: int, dims: Sequence[int]) -> int:
    """Storage charged for a photo of ``size_bytes`` with vectors of ``dims`` (float32)."""
    vectors = sum(4 * dim + VECTOR_ROW_BYTES for dim in dims)
    return max(size_bytes, FILE_BLOCK_BYTES) + PHOTO_ROW_BYTES + vectors


def tenant_bytes(*, session: Session, tenant_id: int) -> int:
    """Storage the tenant uses, as ``stored_bytes`` charges it: photos (at least a file
    block each), their rows and every vector, not only the bytes as uploaded."""
    photo = case(
        (ImageRow.size_bytes < FILE_BLOCK_BYTES, FILE_BLOCK_BYTES), else_=ImageRow.size_bytes
    )
    photos = (
        select(func.coalesce(func.sum(photo + PHOTO_ROW_BYTES), 0))
        .join(User, User.id == ImageRow.user_id)
        .where(User.tenant_id == tenant_id)
    )
    vectors = (
        select(func.coalesce(func.sum(Embedding.dim * 4 + VECTOR_ROW_BYTES), 0))
        .join(User, User.id == Embedding.user_id)
        .where(User.tenant_id == tenant_id)
    )
    return int(session.scalar(photos) or 0) + int(session.scalar(vectors) or 0)


def tenant_usage(*, session: Session, tenant_id: int) -> tuple[int, int, int, int]:
    """(users, concepts, photos, bytes of photos) the tenant stores."""
    users = session.scalar(
        select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
    )
    concepts = session.scalar(
        select(func.count())
        .select_from(Concept)
        .join(User, User.id == Concept.user_id)
        .where(User.tenant_id == tenant_id)
    )
    photos = session.scalar(
        select(func.count())
        .select_from(ImageRow)
        .join(User, User.id == ImageRow.user_id)
        .where(User.tenant_id == tenant_id)
    )
    return (
        int(users or 0),
        int(concepts or 0),
        int(photos or 0),
        tenant_bytes(session=session, tenant_id=tenant_id),
    )
