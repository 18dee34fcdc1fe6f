"""The quotas of a user's writes: concepts per user, photos per concept, bytes per tenant.

A write of photos checks them twice: before any photo is decoded or embedded (so a user
at a quota cannot keep the encoder busy for nothing), and again under the user's lock,
where the answer is final.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.domain.errors import ConceptNotFound, QuotaExceeded, StorageQuotaExceeded
from app.domain.scope import UserScope
from app.services import Services
from app.storage.db.models import PHOTO
from app.storage.repository import concepts as concept_rows
from app.storage.repository import images as image_rows
from app.storage.repository import tenants as tenant_rows
from app.storage.repository import users as user_rows
from app.usecases.photos import Upload


def upload_sizes(uploads: Sequence[Upload]) -> list[int]:
    """The bytes of each upload, as the tenant's quota counts them."""
    return [len(upload) if isinstance(upload, bytes) else len(upload.data) for upload in uploads]


def check_before_work(
    services: Services,
    scope: UserScope,
    *,
    concept_id: str | None,
    sizes: Sequence[int],
    role: str = PHOTO,
) -> None:
    """The quotas a write of photos (or with ``role``, negatives) would meet (to a new
    concept when ``concept_id`` is None), and a concept that does not exist, before the
    photos are decoded or embedded."""
    with services.sessions() as session:
        found = user_rows.user_version(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
        existing = 0
        if concept_id is not None:
            if found is None:
                raise ConceptNotFound(f"no concept {concept_id!r} for this user")
            concept = concept_rows.get_concept(
                session=session, user_id=found[0], concept_id=concept_id
            )
            existing = image_rows.count_images(session=session, concept_id=concept.id, role=role)
        elif found is not None:
            check_concept_count(services, session, user_id=found[0])
        check_photo_quotas(
            services, session, tenant_id=scope.tenant_id, existing=existing, sizes=sizes
        )


def check_concept_count(services: Services, session: Session, *, user_id: int) -> None:
    """Room for one more concept of the user."""
    limit = services.settings.max_concepts_per_user
    if concept_rows.count_concepts(session=session, user_id=user_id) >= limit:
        raise QuotaExceeded(f"this user has the most concepts allowed ({limit})")


def check_photo_quotas(
    services: Services,
    session: Session,
    *,
    tenant_id: int,
    existing: int,
    sizes: Sequence[int],
) -> None:
    """Photos (or negatives) per concept and bytes per tenant. Checked under the user's
    lock; writes of other users of the tenant can pass the byte quota together by at most
    one request each."""
    settings = services.settings
    if existing + len(sizes) > settings.max_photos_per_concept:
        raise QuotaExceeded(
            f"a concept holds at most {settings.max_photos_per_concept} photos; "
            f"it has {existing} and {len(sizes)} were sent"
        )
    if settings.max_tenant_bytes:
        dims = [services.encoder.dim]
        adding = sum(tenant_rows.stored_bytes(size_bytes=size, dims=dims) for size in sizes)
        if (
            tenant_rows.tenant_bytes(session=session, tenant_id=tenant_id) + adding
            > settings.max_tenant_bytes
        ):
            raise StorageQuotaExceeded(
                f"this app stores at most {settings.max_tenant_bytes} bytes of photos and "
                "their vectors (each photo counts at least 4 KiB plus its rows)"
            )
