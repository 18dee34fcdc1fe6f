"""Photo rows: adding and deleting, lookups within a user's concept, counts, blob keys in use."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.errors import ImageNotFound
from app.storage.db.models import PHOTO, ImageRow


def add_image(
    *,
    session: Session,
    user_id: int,
    concept_id: str,
    sha256: str,
    blob_key: str,
    media_type: str,
    width: int,
    height: int,
    size_bytes: int,
    role: str = PHOTO,
) -> ImageRow:
    """Add a photo row (flushed, so it has its id) for a blob already stored; ``role``
    NEGATIVE for a photo the user said is not the concept."""
    image = ImageRow(
        role=role,
        concept_id=concept_id,
        user_id=user_id,
        sha256=sha256,
        blob_key=blob_key,
        media_type=media_type,
        width=width,
        height=height,
        size_bytes=size_bytes,
    )
    session.add(image)
    session.flush()
    return image


def delete_image(*, session: Session, image: ImageRow) -> None:
    """Delete the photo row; its vectors go with it (ON DELETE CASCADE). Its blob stays."""
    session.delete(image)


def get_image(
    *,
    session: Session,
    user_id: int,
    concept_id: str,
    image_id: str,
    role: str | None = PHOTO,
) -> ImageRow:
    """One photo of the user's concept (``role`` None: a photo or a negative)."""
    query = select(ImageRow).where(
        ImageRow.id == image_id,
        ImageRow.concept_id == concept_id,
        ImageRow.user_id == user_id,
    )
    image = session.scalar(query if role is None else query.where(ImageRow.role == role))
    if image is None:
        raise ImageNotFound(f"no image {image_id!r} in concept {concept_id!r}")
    return image


def image_exists(*, session: Session, image_id: str) -> bool:
    return session.scalar(select(ImageRow.id).where(ImageRow.id == image_id)) is not None


def images_of(
    *, session: Session, concept_ids: Sequence[str], role: str = PHOTO
) -> dict[str, list[ImageRow]]:
    """The photos (or with ``role``, the negatives) of each concept, oldest first."""
    images: dict[str, list[ImageRow]] = {concept_id: [] for concept_id in concept_ids}
    if concept_ids:
        query = (
            select(ImageRow)
            .where(ImageRow.concept_id.in_(concept_ids), ImageRow.role == role)
            .order_by(ImageRow.id)
        )
        for image in session.scalars(query):
            images[image.concept_id].append(image)
    return images


def count_images(*, session: Session, concept_id: str, role: str = PHOTO) -> int:
    query = (
        select(func.count())
        .select_from(ImageRow)
        .where(ImageRow.concept_id == concept_id, ImageRow.role == role)
    )
    return int(session.scalar(query) or 0)


def blobs_in_use(*, session: Session, user_id: int, keys: Sequence[str]) -> set[str]:
    query = select(ImageRow.blob_key).where(
        ImageRow.user_id == user_id, ImageRow.blob_key.in_(keys)
    )
    return set(session.scalars(query))
