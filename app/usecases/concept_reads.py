"""Reading a user's concepts and photos."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.domain.errors import ConceptNotFound, ImageNotFound, PhotoFileMissing
from app.domain.scope import UserScope
from app.services import Services
from app.storage.db.models import Concept, ImageRow
from app.storage.repository import concepts as concept_rows
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.storage.thumbnails import Thumbnail, make_thumbnail, thumbnail_side
from app.usecases.lookalikes import LooksLike, looks_like
from app.usecases.photo_policy import PhotoPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConceptView:
    concept: Concept
    images: list[ImageRow]
    looks_like: LooksLike | None = None


def with_looks_like(
    services: Services, *, user_id: int, version: int, views: Sequence[ConceptView]
) -> list[ConceptView]:
    """The views, each flagged with the other concept of the user it looks like, if any."""
    found = looks_like(
        services, user_id=user_id, version=version, concept_ids=[v.concept.id for v in views]
    )
    return [replace(view, looks_like=found.get(view.concept.id)) for view in views]


def get_concept(
    services: Services, *, scope: UserScope, concept_id: str, looks_like: bool = False
) -> ConceptView:
    """One concept with its photos; with ``looks_like``, flagged with the other concept of
    the user it looks like (a search of its vectors: asked for, never computed on writes)."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            raise ConceptNotFound(f"no concept {concept_id!r} for this user")
        concept = concept_rows.get_concept(session=session, user_id=user.id, concept_id=concept_id)
        images = image_rows.images_of(session=session, concept_ids=[concept.id])[concept.id]
        user_id, version = user.id, user.version
    view = ConceptView(concept=concept, images=images)
    if not looks_like:
        return view
    return with_looks_like(services, user_id=user_id, version=version, views=[view])[0]


def list_concepts(
    services: Services,
    *,
    scope: UserScope,
    limit: int,
    after: str | None,
    looks_like: bool = False,
) -> tuple[list[ConceptView], str | None]:
    """One page of concepts, oldest first, and the cursor of the next page (None at the end);
    with ``looks_like``, each flagged as ``get_concept`` flags it."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            return [], None
        concepts = concept_rows.list_concepts(
            session=session, user_id=user.id, limit=limit + 1, after=after
        )
        page = list(concepts[:limit])
        images = image_rows.images_of(session=session, concept_ids=[c.id for c in page])
        views = [ConceptView(concept=c, images=images[c.id]) for c in page]
        user_id, version = user.id, user.version
    if looks_like:
        views = with_looks_like(services, user_id=user_id, version=version, views=views)
    return views, (page[-1].id if len(concepts) > limit else None)


def _image_row(services: Services, *, scope: UserScope, concept_id: str, image_id: str) -> ImageRow:
    """The user's photo row, or ConceptNotFound / ImageNotFound (a foreign id alike)."""
    with services.sessions() as session:
        user = user_rows.find_user(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        if user is None:
            raise ConceptNotFound(f"no concept {concept_id!r} for this user")
        # A negative's photo is read at the same path as the concept's own photos.
        return image_rows.get_image(
            session=session, user_id=user.id, concept_id=concept_id, image_id=image_id, role=None
        )


def read_image(
    services: Services, *, scope: UserScope, concept_id: str, image_id: str
) -> tuple[bytes, str]:
    """The stored bytes of one photo and their media type."""
    image = _image_row(
        services,
        scope=scope,
        concept_id=concept_id,
        image_id=image_id,
    )
    return read_blob(services, image.blob_key, image_id=image_id, concept_id=concept_id), (
        image.media_type
    )


def read_thumbnail(
    services: Services,
    *,
    scope: UserScope,
    concept_id: str,
    image_id: str,
    size: int,
    if_none_match: str | None = None,
) -> tuple[Thumbnail | None, str]:
    """The photo downscaled to at most ``thumbnail_side(size)`` pixels a side (never larger
    than stored), from the thumbnail cache when it is there; with an ETag naming its
    content and that side, so every ``size`` rounded to one side shares one thumbnail.
    None for the thumbnail when the client has it already (``if_none_match`` is its ETag):
    nothing is read or made for a 304."""
    image = _image_row(
        services,
        scope=scope,
        concept_id=concept_id,
        image_id=image_id,
    )
    side = thumbnail_side(size)
    etag = f'"{image.sha256[:32]}-{side}"'
    if if_none_match == etag:
        return None, etag
    key = (image.blob_key, side)
    thumbnail = services.thumbnails.get(key)
    if thumbnail is None:
        data = read_blob(services, image.blob_key, image_id=image_id, concept_id=concept_id)
        if max(image.width, image.height) <= side:
            # Its size is in its row: a photo already that small is sent as stored, undecoded.
            thumbnail = Thumbnail(data, image.media_type)
        else:
            policy = PhotoPolicy.for_thumbnails(services, scope.tenant_id, side)
            thumbnail = make_thumbnail(data, image.media_type, side, policy.decode)
        services.thumbnails.put(key, thumbnail)
    return thumbnail, etag


def read_blob(services: Services, key: str, *, image_id: str, concept_id: str) -> bytes:
    """A photo's stored bytes; PhotoFileMissing (logged) when its file is gone."""
    try:
        return services.blobs.get(key)
    except FileNotFoundError:
        # Deleted while we read it (its concept or user went in between)? Then it is
        # simply not found; only a row that is still there without its file is a loss.
        with services.sessions() as session:
            still_there = image_rows.image_exists(session=session, image_id=image_id)
        if not still_there:
            raise ImageNotFound(f"no image {image_id!r} in this concept") from None
        logger.error(
            "photo %s of concept %s has no file (blob %s): run `rapport doctor`",
            image_id,
            concept_id,
            key,
        )
        raise PhotoFileMissing(
            "this photo's file is missing on the server; the operator has been told "
            "(`rapport doctor` reports such photos)"
        ) from None
