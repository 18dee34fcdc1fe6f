"""Turning uploaded bytes into stored photos and their vectors, and removing unused ones."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.domain.blob_layout import BlobLayout
from app.domain.errors import BlobStoreUnavailable
from app.services import Services
from app.storage.blobs import sha256_hex
from app.storage.db.models import PHOTO, Embedding, ImageRow
from app.storage.repository import images as image_rows
from app.storage.repository import users as user_rows
from app.storage.repository import vectors as vector_rows
from app.usecases.photo_policy import PhotoPolicy
from retrieval.errors import InvalidRequest, PayloadTooLarge
from retrieval.images import DecodedImage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedPhoto:
    data: bytes
    sha256: str
    decoded: DecodedImage
    vector: np.ndarray


@dataclass(frozen=True)
class DecodedUpload:
    """An uploaded photo already decoded under ``PhotoPolicy.for_uploads`` (the importer
    decodes each photo on its own to report which one fails)."""

    data: bytes
    decoded: DecodedImage


Upload = bytes | DecodedUpload


def check_photo_count(services: Services, count: int, *, required: bool = True) -> None:
    """One request's photos: at most ``max_images_per_request``, and at least one when
    ``required`` (adding photos; a concept is registered with none or more)."""
    limit = services.settings.max_images_per_request
    if required and not count:
        raise InvalidRequest("at least one image is required")
    if count > limit:
        raise InvalidRequest(f"{count} images in one request; the limit is {limit}")


def prepare_photos(
    services: Services,
    uploads: Sequence[Upload],
    owner: Hashable | None,
    *,
    required: bool = True,
) -> list[PreparedPhoto]:
    """Decode every upload not decoded yet (rejecting the request on the first bad one),
    then embed all at once (none for a text-only concept, when not ``required``). The
    pixels all of them would decode are counted from their headers first, against
    RAPPORT_MAX_REQUEST_PIXELS (413 before any decode); each decode holds its pixels as
    ``owner``'s (the app's) in the process's decode budget."""
    check_photo_count(services, len(uploads), required=required)
    if not uploads:
        return []
    policy = PhotoPolicy.for_uploads(services, owner)
    pending = [upload for upload in uploads if not isinstance(upload, DecodedUpload)]
    check_request_pixels(services, sum(policy.cost_of(upload) for upload in pending))
    decoded = [
        upload
        if isinstance(upload, DecodedUpload)
        else DecodedUpload(upload, policy.decode(upload))
        for upload in uploads
    ]
    vectors = services.encoder.encode_images([photo.decoded.image for photo in decoded])
    return [
        PreparedPhoto(
            data=photo.data, sha256=sha256_hex(photo.data), decoded=photo.decoded, vector=vector
        )
        for photo, vector in zip(decoded, vectors, strict=True)
    ]


def check_request_pixels(services: Services, pixels: int) -> None:
    """The pixels one request's photos decode: at most RAPPORT_MAX_REQUEST_PIXELS."""
    limit = services.settings.max_request_pixels
    if pixels > limit:
        raise PayloadTooLarge(
            f"the photos decode to {pixels} pixels together; one request may decode {limit}"
        )


def store_photos(
    services: Services,
    *,
    session: Session,
    tenant_id: int,
    user_id: int,
    concept_id: str,
    photos: Sequence[PreparedPhoto],
    role: str = PHOTO,
) -> tuple[list[ImageRow], list[Embedding]]:
    """Write blobs, then image and vector rows, inside the caller's (user-locked) transaction;
    ``role`` NEGATIVE for photos the user said are not the concept."""
    images, embeddings = [], []
    for photo in photos:
        key = BlobLayout(tenant_id=tenant_id, user_id=user_id).key(photo.sha256)
        services.blobs.put(key, photo.data)
        image = image_rows.add_image(
            session=session,
            user_id=user_id,
            concept_id=concept_id,
            sha256=photo.sha256,
            blob_key=key,
            media_type=photo.decoded.media_type,
            width=photo.decoded.width,
            height=photo.decoded.height,
            size_bytes=len(photo.data),
            role=role,
        )
        embedding = vector_rows.add_vector(
            session=session, image=image, vector=photo.vector, model_id=services.encoder.model_id
        )
        images.append(image)
        embeddings.append(embedding)
    session.flush()
    return images, embeddings


def collect_blobs(services: Services, *, user_id: int, keys: Sequence[str]) -> None:
    """Delete the blobs among ``keys`` that no photo row references any more.

    Runs under the user's row lock, as every write of blobs for that user does,
    so a blob being written for a concurrent upload of the same photo is kept.
    A store that cannot delete them now leaves unreferenced blobs only, which
    ``rapport doctor --repair`` removes: the rows' change stands (it committed).
    """
    with services.sessions() as session:
        if not user_rows.relock_user(session=session, user_id=user_id):
            return
        unused = set(keys) - image_rows.blobs_in_use(session=session, user_id=user_id, keys=keys)
        try:
            for key in sorted(unused):
                services.blobs.delete(key)
        except BlobStoreUnavailable:
            logger.warning("%d unreferenced photos left for `rapport doctor --repair`", len(unused))
        session.commit()
