"""Corrections: photos a user says are *not* one of their concepts ("that is not <bo>").

A negative is stored like a photo (blob, row, vector; counted in the quotas, exported,
erased with the user) with the role NEGATIVE. It never enters the user's index: the
decision rule (retrieval/decision.py) rehearses it as an impostor and rejects the
concept for a query photo at least as close to it as to the concept's own photos.
Each write bumps the user's version, so every process refits the rule at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.blob_layout import BlobLayout
from app.domain.errors import ConceptNotFound, NegativeIsOwnPhoto
from app.domain.scope import UserScope
from app.services import Services
from app.storage.db.models import NEGATIVE, ImageRow, utcnow
from app.storage.repository import concepts as concept_rows
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.storage.repository import vectors as vector_rows
from app.usecases.photos import (
    PreparedPhoto,
    Upload,
    collect_blobs,
    prepare_photos,
    store_photos,
)
from app.usecases.quotas import check_before_work, check_photo_quotas, upload_sizes
from app.usecases.user_write import UserWrite, user_write

# A negative at least this similar to one of the concept's own photos is that photo
# again (re-saved, resized, re-compressed), not a photo of something else.
SAME_PHOTO = 0.99


def add_negatives(
    services: Services, *, scope: UserScope, concept_id: str, uploads: Sequence[Upload]
) -> list[ImageRow]:
    """Store photos that are not the concept; the concept's negatives, oldest first.

    Refused (409, nothing stored) when one is one of the concept's own photos or
    nearly so: that would make the concept unmatchable instead of correcting it.
    """
    sizes = upload_sizes(uploads)
    check_before_work(services, scope, concept_id=concept_id, sizes=sizes, role=NEGATIVE)
    photos = prepare_photos(services, uploads, scope.tenant_id)
    with user_write(services, scope, missing=_no_concept(concept_id)) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        _refuse_own_photos(services, w, concept.id, photos)
        existing = image_rows.count_images(session=w.session, concept_id=concept.id, role=NEGATIVE)
        check_photo_quotas(
            services, w.session, tenant_id=scope.tenant_id, existing=existing, sizes=sizes
        )
        layout = BlobLayout(tenant_id=scope.tenant_id, user_id=w.user_id)
        keys = [layout.key(photo.sha256) for photo in photos]
        w.on_rollback(lambda: collect_blobs(services, user_id=w.user_id, keys=keys))
        store_photos(
            services,
            session=w.session,
            tenant_id=scope.tenant_id,
            user_id=w.user_id,
            concept_id=concept.id,
            photos=photos,
            role=NEGATIVE,
        )
        concept.updated_at = utcnow()
        w.rule_changes()
        negatives = image_rows.images_of(
            session=w.session, concept_ids=[concept.id], role=NEGATIVE
        )[concept.id]
    return negatives


def list_negatives(services: Services, *, scope: UserScope, concept_id: str) -> list[ImageRow]:
    """The concept's negatives, oldest first (404 for a concept that is not the user's)."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            raise _no_concept(concept_id)
        concept = concept_rows.get_concept(session=session, user_id=user.id, concept_id=concept_id)
        return image_rows.images_of(session=session, concept_ids=[concept.id], role=NEGATIVE)[
            concept.id
        ]


def delete_negative(
    services: Services, *, scope: UserScope, concept_id: str, image_id: str
) -> None:
    """Remove one correction; the concept may again be claimed for photos like it."""
    with user_write(services, scope, missing=_no_concept(concept_id)) as w:
        image = image_rows.get_image(
            session=w.session,
            user_id=w.user_id,
            concept_id=concept_id,
            image_id=image_id,
            role=NEGATIVE,
        )
        image_rows.delete_image(session=w.session, image=image)
        concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        ).updated_at = utcnow()
        w.rule_changes()
    collect_blobs(services, user_id=w.user_id, keys=[image.blob_key])


def _refuse_own_photos(
    services: Services, w: UserWrite, concept_id: str, photos: Sequence[PreparedPhoto]
) -> None:
    own = image_rows.images_of(session=w.session, concept_ids=[concept_id])[concept_id]
    hashes = {image.sha256 for image in own}
    vectors = vector_rows.concept_vectors(
        session=w.session, concept_id=concept_id, model_id=services.encoder.model_id
    )
    for number, photo in enumerate(photos, start=1):
        # Random weights score every pair of photos near 1: only the bytes can tell.
        by_vector = len(vectors) and not services.decisions.random_weights
        same = photo.sha256 in hashes or (
            by_vector and float((vectors @ photo.vector).max()) >= SAME_PHOTO
        )
        if same:
            raise NegativeIsOwnPhoto(
                f"photo {number} is one of the concept's own photos (or nearly the same "
                "photo); delete that photo instead of marking it as not the concept"
            )


def _no_concept(concept_id: str) -> ConceptNotFound:
    return ConceptNotFound(f"no concept {concept_id!r} for this user")
