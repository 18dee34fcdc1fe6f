"""Registering, reading, changing and deleting a user's concepts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.domain.blob_layout import BlobLayout
from app.domain.errors import (
    ConceptNameTaken,
    ConceptNotFound,
)
from app.domain.scope import UserScope
from app.domain.text_fields import concept_name
from app.services import Services
from app.storage.db.models import Concept, Embedding, ImageRow, MemoryEvent, utcnow
from app.storage.repository import concepts as concept_rows
from app.storage.repository import images as image_rows
from app.storage.repository import vectors as vector_rows
from app.usecases.concept_reads import ConceptView
from app.usecases.history_record import record, summary
from app.usecases.photos import (
    PreparedPhoto,
    Upload,
    collect_blobs,
    prepare_photos,
    store_photos,
)
from app.usecases.quotas import (
    check_before_work,
    check_concept_count,
    check_photo_quotas,
    upload_sizes,
)
from app.usecases.user_write import UserWrite, user_write
from retrieval.errors import InvalidRequest
from retrieval.index import UserIndex
from retrieval.names import name_key


@dataclass(frozen=True)
class ConceptChanges:
    name: str | None = None
    description: str | None = None
    category: str | None = None


def _checked_name(name: str) -> str:
    try:
        concept_name(name)  # the API's forms check it already; imports come here directly
    except ValueError as error:
        raise InvalidRequest(f"name: {error}") from None
    key = name_key(name)
    if not key:
        raise InvalidRequest("name must contain a visible character")
    return key


def create_concept(
    services: Services,
    *,
    scope: UserScope,
    name: str,
    description: str,
    category: str | None,
    uploads: Sequence[Upload],
    source: str = "api",
    recorded: list[MemoryEvent] | None = None,
) -> ConceptView:
    """Register a concept with its photos, or none (a text-only concept: found when named,
    never by a photo, until one is added); the concept and its vectors commit together."""
    _checked_name(name)  # before any photo is decoded
    sizes = upload_sizes(uploads)
    check_before_work(services, scope, concept_id=None, sizes=sizes)
    photos = prepare_photos(services, uploads, scope.tenant_id, required=False)
    with user_write(services, scope, create=True, source=source, recorded=recorded) as w:
        check_photo_quotas(services, w.session, tenant_id=scope.tenant_id, existing=0, sizes=sizes)
        concept = add_concept_row(
            services, w, name=name, description=description, category=category
        )
        images, embeddings = _store(services, w, scope, concept.id, photos)
        if embeddings:
            w.after_commit(lambda index: _add(index, embeddings, photos))
        record(
            w, action="created", concept_id=concept.id, before=None, after=summary(concept, images)
        )
    return ConceptView(concept=concept, images=images)


def add_concept_row(
    services: Services, w: UserWrite, *, name: str, description: str, category: str | None
) -> Concept:
    """Add the concept's row in ``w`` (no photo, not recorded yet), under the user's
    concept quota; a name the user already has is refused."""
    key = _checked_name(name)
    w.conflict_is(_name_taken(name))
    if concept_rows.name_in_use(session=w.session, user_id=w.user_id, name_key=key):
        raise _name_taken(name)
    check_concept_count(services, w.session, user_id=w.user_id)
    return concept_rows.add_concept(
        session=w.session,
        user_id=w.user_id,
        name=name.strip(),
        name_key=key,
        description=description,
        category=category,
    )


def add_images(
    services: Services,
    *,
    scope: UserScope,
    concept_id: str,
    uploads: Sequence[Upload],
    source: str = "api",
    recorded: list[MemoryEvent] | None = None,
) -> ConceptView:
    sizes = upload_sizes(uploads)
    check_before_work(services, scope, concept_id=concept_id, sizes=sizes)
    photos = prepare_photos(services, uploads, scope.tenant_id)
    with user_write(
        services, scope, missing=_no_concept(concept_id), source=source, recorded=recorded
    ) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        had = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
        check_photo_quotas(
            services, w.session, tenant_id=scope.tenant_id, existing=len(had), sizes=sizes
        )
        before = summary(concept, had)
        _, embeddings = _store(services, w, scope, concept.id, photos)
        concept.updated_at = utcnow()
        images = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
        w.after_commit(lambda index: _add(index, embeddings, photos))
        record(
            w,
            action="updated",
            concept_id=concept.id,
            before=before,
            after=summary(concept, images),
        )
    return ConceptView(concept=concept, images=images)


def update_concept(
    services: Services,
    *,
    scope: UserScope,
    concept_id: str,
    changes: ConceptChanges,
    source: str = "api",
    recorded: list[MemoryEvent] | None = None,
) -> ConceptView:
    # Names live in SQL, not in the index: the cached index stays valid at the new version.
    with user_write(
        services, scope, missing=_no_concept(concept_id), source=source, recorded=recorded
    ) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        images = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
        change_fields(w, concept, images, changes)
    return ConceptView(concept=concept, images=images)


def change_fields(
    w: UserWrite, concept: Concept, images: Sequence[ImageRow], changes: ConceptChanges
) -> None:
    """Change the concept's fields in ``w`` (a name another concept of the user has is
    refused), recorded in the history."""
    before = summary(concept, images)
    if changes.name is not None:
        key = _checked_name(changes.name)
        if concept_rows.name_in_use(
            session=w.session, user_id=w.user_id, name_key=key, except_id=concept.id
        ):
            raise _name_taken(changes.name)
        concept.name, concept.name_key = changes.name.strip(), key
    if changes.description is not None:
        concept.description = changes.description
    if changes.category is not None:
        concept.category = changes.category or None
    concept.updated_at = utcnow()
    w.conflict_is(_name_taken(concept.name))
    record(
        w, action="updated", concept_id=concept.id, before=before, after=summary(concept, images)
    )


def delete_concept(
    services: Services,
    *,
    scope: UserScope,
    concept_id: str,
    source: str = "api",
    recorded: list[MemoryEvent] | None = None,
) -> None:
    with user_write(
        services, scope, missing=_no_concept(concept_id), source=source, recorded=recorded
    ) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        keys = remove_concept(w, concept)
    collect_blobs(services, user_id=w.user_id, keys=keys)


def remove_concept(w: UserWrite, concept: Concept) -> list[str]:
    """Delete the concept with its photos and vectors in ``w``, recorded in the history;
    the blob keys to collect once committed."""
    images = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
    vector_ids = vector_rows.embedding_ids(session=w.session, image_ids=[i.id for i in images])
    record(w, action="deleted", concept_id=concept.id, before=summary(concept, images), after=None)
    concept_rows.delete_concept(session=w.session, concept=concept)
    w.after_commit(lambda index: index.remove(vector_ids))
    return [image.blob_key for image in images]


def delete_image(
    services: Services,
    *,
    scope: UserScope,
    concept_id: str,
    image_id: str,
    source: str = "api",
    recorded: list[MemoryEvent] | None = None,
) -> None:
    with user_write(
        services, scope, missing=_no_concept(concept_id), source=source, recorded=recorded
    ) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        image = image_rows.get_image(
            session=w.session, user_id=w.user_id, concept_id=concept_id, image_id=image_id
        )
        keys = remove_images(w, concept, [image])
    collect_blobs(services, user_id=w.user_id, keys=keys)


def remove_images(w: UserWrite, concept: Concept, images: Sequence[ImageRow]) -> list[str]:
    """Delete photos of the concept in ``w`` (the last one too: the concept stays,
    text-only, found when named), recorded in the history; the blob keys to collect."""
    had = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
    gone = {image.id for image in images}
    before = summary(concept, had)
    vector_ids = vector_rows.embedding_ids(session=w.session, image_ids=sorted(gone))
    for image in images:
        image_rows.delete_image(session=w.session, image=image)
    concept.updated_at = utcnow()
    after = summary(concept, [image for image in had if image.id not in gone])
    record(w, action="updated", concept_id=concept.id, before=before, after=after)
    w.after_commit(lambda index: index.remove(vector_ids))
    return [image.blob_key for image in images]


def _store(
    services: Services,
    w: UserWrite,
    scope: UserScope,
    concept_id: str,
    photos: Sequence[PreparedPhoto],
) -> tuple[list[ImageRow], list[Embedding]]:
    """Store the photos in the write's transaction; if it does not commit, the blobs it
    wrote that no committed row uses are deleted again."""
    layout = BlobLayout(tenant_id=scope.tenant_id, user_id=w.user_id)
    keys = [layout.key(photo.sha256) for photo in photos]
    w.on_rollback(lambda: collect_blobs(services, user_id=w.user_id, keys=keys))
    return store_photos(
        services,
        session=w.session,
        tenant_id=scope.tenant_id,
        user_id=w.user_id,
        concept_id=concept_id,
        photos=photos,
    )


def _no_concept(concept_id: str) -> ConceptNotFound:
    return ConceptNotFound(f"no concept {concept_id!r} for this user")


def _name_taken(name: str) -> ConceptNameTaken:
    return ConceptNameTaken(f"this user already has a concept named {name!r}")


def _add(
    index: UserIndex, embeddings: Sequence[Embedding], photos: Sequence[PreparedPhoto]
) -> None:
    index.add(
        [e.id for e in embeddings],
        [e.concept_id for e in embeddings],
        np.stack([photo.vector for photo in photos]),
    )
