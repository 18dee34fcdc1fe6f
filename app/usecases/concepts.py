"""Registering, reading, changing and deleting a user's concepts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.domain.errors import (
    ConceptNameTaken,
    ConceptNotFound,
    LastImage,
)
from app.domain.scope import UserScope
from app.domain.text_fields import concept_name
from app.services import Services
from app.storage.db.models import Embedding, ImageRow, utcnow
from app.storage.repository import concepts as concept_rows
from app.storage.repository import images as image_rows
from app.storage.repository import vectors as vector_rows
from app.storage.repository.users import UserLock
from app.usecases.concept_reads import ConceptView, with_looks_like
from app.usecases.photos import (
    PreparedPhoto,
    Upload,
    collect_blobs,
    photo_key,
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
from retrieval import UserIndex, name_key
from retrieval.errors import InvalidRequest


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
) -> ConceptView:
    """Register a concept with its photos; the concept and its vectors commit together."""
    key = _checked_name(name)
    sizes = upload_sizes(uploads)
    check_before_work(services, scope, concept_id=None, sizes=sizes)
    photos = prepare_photos(services, uploads, scope.tenant_id)
    with user_write(services, scope, create=True) as w:
        w.conflict_is(_name_taken(name))
        if concept_rows.name_in_use(session=w.session, user_id=w.user_id, name_key=key):
            raise _name_taken(name)
        check_concept_count(services, w.session, user_id=w.user_id)
        check_photo_quotas(services, w.session, tenant_id=scope.tenant_id, existing=0, sizes=sizes)
        concept = concept_rows.add_concept(
            session=w.session,
            user_id=w.user_id,
            name=name.strip(),
            name_key=key,
            description=description,
            category=category,
        )
        images, embeddings = _store(services, w, scope, concept.id, photos)
        w.after_commit(lambda index: _add(index, embeddings, photos))
    return _flagged(services, w.lock, ConceptView(concept=concept, images=images))


def add_images(
    services: Services,
    *,
    scope: UserScope,
    concept_id: str,
    uploads: Sequence[Upload],
) -> ConceptView:
    sizes = upload_sizes(uploads)
    check_before_work(services, scope, concept_id=concept_id, sizes=sizes)
    photos = prepare_photos(services, uploads, scope.tenant_id)
    with user_write(services, scope, missing=_no_concept(concept_id)) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        existing = image_rows.count_images(session=w.session, concept_id=concept.id)
        check_photo_quotas(
            services, w.session, tenant_id=scope.tenant_id, existing=existing, sizes=sizes
        )
        _, embeddings = _store(services, w, scope, concept.id, photos)
        concept.updated_at = utcnow()
        images = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
        w.after_commit(lambda index: _add(index, embeddings, photos))
    return _flagged(services, w.lock, ConceptView(concept=concept, images=images))


def update_concept(
    services: Services,
    *,
    scope: UserScope,
    concept_id: str,
    changes: ConceptChanges,
) -> ConceptView:
    # Names live in SQL, not in the index: the cached index stays valid at the new version.
    with user_write(services, scope, missing=_no_concept(concept_id)) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        images = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
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
    return _flagged(services, w.lock, ConceptView(concept=concept, images=images))


def delete_concept(services: Services, *, scope: UserScope, concept_id: str) -> None:
    with user_write(services, scope, missing=_no_concept(concept_id)) as w:
        concept = concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        )
        images = image_rows.images_of(session=w.session, concept_ids=[concept.id])[concept.id]
        vector_ids = vector_rows.embedding_ids(session=w.session, image_ids=[i.id for i in images])
        concept_rows.delete_concept(session=w.session, concept=concept)
        w.after_commit(lambda index: index.remove(vector_ids))
    collect_blobs(services, user_id=w.user_id, keys=[image.blob_key for image in images])


def delete_image(services: Services, *, scope: UserScope, concept_id: str, image_id: str) -> None:
    with user_write(services, scope, missing=_no_concept(concept_id)) as w:
        image = image_rows.get_image(
            session=w.session, user_id=w.user_id, concept_id=concept_id, image_id=image_id
        )
        if image_rows.count_images(session=w.session, concept_id=concept_id) <= 1:
            raise LastImage("a concept keeps at least one photo; delete the concept instead")
        vector_ids = vector_rows.embedding_ids(session=w.session, image_ids=[image.id])
        image_rows.delete_image(session=w.session, image=image)
        concept_rows.get_concept(
            session=w.session, user_id=w.user_id, concept_id=concept_id
        ).updated_at = utcnow()
        w.after_commit(lambda index: index.remove(vector_ids))
    collect_blobs(services, user_id=w.user_id, keys=[image.blob_key])


def _store(
    services: Services,
    w: UserWrite,
    scope: UserScope,
    concept_id: str,
    photos: Sequence[PreparedPhoto],
) -> tuple[list[ImageRow], list[Embedding]]:
    """Store the photos in the write's transaction; if it does not commit, the blobs it
    wrote that no committed row uses are deleted again."""
    keys = [
        photo_key(tenant_id=scope.tenant_id, user_id=w.user_id, sha256=photo.sha256)
        for photo in photos
    ]
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


def _flagged(services: Services, lock: UserLock, view: ConceptView) -> ConceptView:
    return with_looks_like(services, user_id=lock.user_id, version=lock.to_version, views=[view])[0]


def _add(
    index: UserIndex, embeddings: Sequence[Embedding], photos: Sequence[PreparedPhoto]
) -> None:
    index.add(
        [e.id for e in embeddings],
        [e.concept_id for e in embeddings],
        np.stack([photo.vector for photo in photos]),
    )
