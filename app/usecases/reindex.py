"""Re-embedding stored photos after a change of CLIP model."""

from __future__ import annotations

from collections.abc import Callable

from app.services import Services
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.storage.repository import vectors as vector_rows
from app.usecases.photo_policy import PhotoPolicy

BATCH = 64


def reindex_all(services: Services, *, progress: Callable[[int], None] = lambda _: None) -> int:
    """Give every photo a vector of the current model; return how many were embedded.

    Vectors of other models are left in place (a rollback of the model setting
    needs no reindex); retrieval only ever reads the current model's vectors.
    """
    model_id = services.encoder.model_id
    done = 0
    while True:
        with services.sessions() as session:
            rows = vector_rows.images_without_vector(
                session=session, model_id=model_id, limit=BATCH
            )
        if not rows:
            return done
        # The configured caps: a photo accepted under raised caps must not abort the reindex.
        policy = PhotoPolicy.for_reembedding(services)
        images = [policy.decode(services.blobs.get(row.blob_key)).image for row in rows]
        vectors = services.encoder.encode_all(images)  # waits for room: offline work
        by_user: dict[int, list[int]] = {}
        for number, row in enumerate(rows):
            by_user.setdefault(row.user_id, []).append(number)
        for user_id, numbers in by_user.items():
            with services.sessions() as session:
                # Under the user's lock and one version bump per user and batch, as every
                # write of vectors is (each bump makes every process reload the user).
                if not user_rows.relock_user(session=session, user_id=user_id):
                    continue
                user_rows.bump_version(session=session, user_id=user_id)
                for number in numbers:
                    row = rows[number]
                    if image_rows.image_exists(session=session, image_id=row.id):
                        vector_rows.add_vector(
                            session=session, image=row, vector=vectors[number], model_id=model_id
                        )
                session.commit()
        done += len(rows)
        progress(done)
