"""Vector rows (one per photo and model): adding one, a user's matrix, photos lacking one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.storage.db.models import NEGATIVE, PHOTO, Embedding, ImageRow


def embedding_ids(*, session: Session, image_ids: Sequence[str]) -> list[int]:
    query = select(Embedding.id).where(Embedding.image_id.in_(image_ids))
    return list(session.scalars(query))


def user_vectors(
    *, session: Session, user_id: int, model_id: str, role: str = PHOTO
) -> tuple[list[int], list[str], np.ndarray]:
    """Every vector of the user's photos (or with ``role``, negatives) made by
    ``model_id``: (ids, concept ids, matrix)."""
    rows = session.execute(
        select(Embedding.id, Embedding.concept_id, Embedding.dim, Embedding.vector)
        .join(ImageRow, ImageRow.id == Embedding.image_id)
        .where(Embedding.user_id == user_id, Embedding.model_id == model_id, ImageRow.role == role)
        .order_by(Embedding.id)
    ).all()
    if not rows:
        return [], [], np.zeros((0, 0), dtype=np.float32)
    dim = rows[0].dim
    matrix = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32)
    return [row.id for row in rows], [row.concept_id for row in rows], matrix.reshape(-1, dim)


def user_negatives(
    *, session: Session, user_id: int, model_id: str
) -> tuple[np.ndarray, list[str]]:
    """The vectors of the user's corrections (photos that are not a concept) made by
    ``model_id``, and the concept each is not."""
    _, labels, matrix = user_vectors(
        session=session, user_id=user_id, model_id=model_id, role=NEGATIVE
    )
    return matrix, labels


def concept_vectors(*, session: Session, concept_id: str, model_id: str) -> np.ndarray:
    """The vectors of the concept's own photos made by ``model_id`` (rows)."""
    rows = session.execute(
        select(Embedding.dim, Embedding.vector)
        .join(ImageRow, ImageRow.id == Embedding.image_id)
        .where(
            Embedding.concept_id == concept_id,
            Embedding.model_id == model_id,
            ImageRow.role == PHOTO,
        )
    ).all()
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32)
    return matrix.reshape(len(rows), rows[0].dim)


def add_vector(
    *, session: Session, image: ImageRow, vector: np.ndarray, model_id: str
) -> Embedding:
    """Add the vector ``model_id`` made of the photo ``image`` (stored as float32 bytes)."""
    embedding = Embedding(
        image_id=image.id,
        concept_id=image.concept_id,
        user_id=image.user_id,
        model_id=model_id,
        dim=int(vector.shape[0]),
        vector=np.ascontiguousarray(vector, dtype=np.float32).tobytes(),
    )
    session.add(embedding)
    return embedding


def _without_vector(model_id: str) -> ColumnElement[bool]:
    """Photos that have no vector of ``model_id`` (reindex embeds them, doctor counts them)."""
    return ImageRow.id.not_in(select(Embedding.image_id).where(Embedding.model_id == model_id))


def images_without_vector(*, session: Session, model_id: str, limit: int) -> Sequence[ImageRow]:
    """Up to ``limit`` photos that have no vector of ``model_id``."""
    return session.scalars(select(ImageRow).where(_without_vector(model_id)).limit(limit)).all()


def count_images_without_vector(*, session: Session, model_id: str) -> int:
    query = select(func.count(ImageRow.id)).where(_without_vector(model_id))
    return int(session.scalar(query) or 0)
