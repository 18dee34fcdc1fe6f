"""Reading a user's concepts and photos."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app import repository as repo
from app.db.models import Concept, ImageRow
from app.errors import PhotoFileMissing
from app.services import Services
from retrieval.errors import ConceptNotFound, ImageNotFound

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConceptView:
    concept: Concept
    images: list[ImageRow]


def get_concept(
    services: Services, *, tenant_id: int, external_user_id: str, concept_id: str
) -> ConceptView:
    with services.sessions() as session:
        user = repo.find_user(session=session, tenant_id=tenant_id, external_id=external_user_id)
        if user is None:
            raise ConceptNotFound(f"no concept {concept_id!r} for this user")
        concept = repo.get_concept(session=session, user_id=user.id, concept_id=concept_id)
        images = repo.images_of(session=session, concept_ids=[concept.id])[concept.id]
        return ConceptView(concept=concept, images=images)


def list_concepts(
    services: Services, *, tenant_id: int, external_user_id: str, limit: int, after: str | None
) -> tuple[list[ConceptView], str | None]:
    """One page of concepts, oldest first, and the cursor of the next page (None at the end)."""
    with services.sessions() as session:
        user = repo.find_user(session=session, tenant_id=tenant_id, external_id=external_user_id)
        if user is None:
            return [], None
        concepts = repo.list_concepts(
            session=session, user_id=user.id, limit=limit + 1, after=after
        )
        page = list(concepts[:limit])
        images = repo.images_of(session=session, concept_ids=[c.id for c in page])
        views = [ConceptView(concept=c, images=images[c.id]) for c in page]
        return views, (page[-1].id if len(concepts) > limit else None)


def read_image(
    services: Services, *, tenant_id: int, external_user_id: str, concept_id: str, image_id: str
) -> tuple[bytes, str]:
    """The stored bytes of one photo and their media type."""
    with services.sessions() as session:
        user = repo.find_user(session=session, tenant_id=tenant_id, external_id=external_user_id)
        if user is None:
            raise ConceptNotFound(f"no concept {concept_id!r} for this user")
        image = repo.get_image(
            session=session, user_id=user.id, concept_id=concept_id, image_id=image_id
        )
    try:
        return services.blobs.get(image.blob_key), image.media_type
    except FileNotFoundError:
        # Deleted while we read it (its concept or user went in between)? Then it is
        # simply not found; only a row that is still there without its file is a loss.
        with services.sessions() as session:
            still_there = repo.image_exists(session=session, image_id=image.id)
        if not still_there:
            raise ImageNotFound(f"no image {image_id!r} in this concept") from None
        logger.error(
            "photo %s of concept %s has no file (blob %s): run `rapport doctor`",
            image_id,
            concept_id,
            image.blob_key,
        )
        raise PhotoFileMissing(
            "this photo's file is missing on the server; the operator has been told "
            "(`rapport doctor` reports such photos)"
        ) from None
