"""Vector rows (one per photo and model): a user's matrix and the ids of photos' vectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Embedding


def embedding_ids(*, session: Session, image_ids: Sequence[str]) -> list[int]:
    query = select(Embedding.id).where(Embedding.image_id.in_(image_ids))
    return list(session.scalars(query))


def user_vectors(
    *, session: Session, user_id: int, model_id: str
) -> tuple[list[int], list[str], np.ndarray]:
    """Every vector of the user made by ``model_id``: (ids, concept ids, matrix)."""
    rows = session.execute(
        select(Embedding.id, Embedding.concept_id, Embedding.dim, Embedding.vector).where(
            Embedding.user_id == user_id, Embedding.model_id == model_id
        )
    ).all()
    if not rows:
        return [], [], np.zeros((0, 0), dtype=np.float32)
    dim = rows[0].dim
    matrix = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32)
    return [row.id for row in rows], [row.concept_id for row in rows], matrix.reshape(-1, dim)
