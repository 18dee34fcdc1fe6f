from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile

from app.domain.text_fields import CONTROL_FREE, VISIBLE, DescriptionText, NameText, PlainText
from app.http.deps import ResourceId, ServicesDep, UserScopeDep
from app.http.openapi import USER_DATA_ERRORS
from app.http.schemas import ConceptOut, ConceptPage, ConceptPatch
from app.services import Services
from app.storage.thumbnails import THUMBNAIL_SIDES
from app.usecases import concept_reads, concepts
from app.usecases.photos import check_photo_count
from retrieval.errors import PayloadTooLarge

router = APIRouter(
    prefix="/v1/users/{user_id}/concepts", tags=["concepts"], responses=USER_DATA_ERRORS
)

Images = Annotated[
    list[UploadFile], File(min_length=1, description="one or more photos of the concept")
]
# Work a read does only when asked: the look-alike search of each concept on the page.
Include = Annotated[
    Literal["looks_like"] | None,
    Query(description="looks_like: flag each concept whose photos look like another's"),
]
OptionalImages = Annotated[
    list[UploadFile] | None,
    File(description="its photos; none registers a text-only concept, found when named"),
]


def read_uploads(
    services: Services, uploads: list[UploadFile], *, required: bool = True
) -> list[bytes]:
    """Each upload's bytes, refusing too many uploads before reading any, and one over the
    per-image cap without reading past it."""
    check_photo_count(services, len(uploads), required=required)
    limit = services.settings.max_image_bytes
    contents = []
    for upload in uploads:
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"{upload.filename or 'an image'} is over {limit} bytes")
        contents.append(data)
    return contents


@router.post("", status_code=201)
def create_concept(
    scope: UserScopeDep,
    services: ServicesDep,
    name: Annotated[NameText, Form(min_length=1, max_length=100, pattern=VISIBLE)],
    description: Annotated[DescriptionText, Form(max_length=4000)] = "",
    category: Annotated[PlainText | None, Form(max_length=50)] = None,
    images: OptionalImages = None,
) -> ConceptOut:
    """Register a concept (name, description, category, photos or none) for a user."""
    view = concepts.create_concept(
        services,
        scope=scope,
        name=name,
        description=description,
        category=category or None,
        uploads=read_uploads(services, images or [], required=False),
    )
    return ConceptOut.from_view(view)


@router.get("")
def list_concepts(
    scope: UserScopeDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, pattern=CONTROL_FREE)] = None,
    include: Include = None,
) -> ConceptPage:
    """List a user's concepts, oldest first; pass next_cursor back for the next page."""
    views, next_cursor = concept_reads.list_concepts(
        services, scope=scope, limit=limit, after=cursor, looks_like=include == "looks_like"
    )
    return ConceptPage(items=[ConceptOut.from_view(v) for v in views], next_cursor=next_cursor)


@router.get("/{concept_id}")
def get_concept(
    scope: UserScopeDep, concept_id: ResourceId, services: ServicesDep, include: Include = None
) -> ConceptOut:
    """One concept with its photos."""
    view = concept_reads.get_concept(
        services, scope=scope, concept_id=concept_id, looks_like=include == "looks_like"
    )
    return ConceptOut.from_view(view)


@router.patch("/{concept_id}")
def update_concept(
    scope: UserScopeDep,
    concept_id: ResourceId,
    patch: ConceptPatch,
    services: ServicesDep,
) -> ConceptOut:
    """Change a concept's name, description or category."""
    view = concepts.update_concept(
        services,
        scope=scope,
        concept_id=concept_id,
        changes=patch.to_changes(),
    )
    return ConceptOut.from_view(view)


@router.delete("/{concept_id}", status_code=204)
def delete_concept(scope: UserScopeDep, concept_id: ResourceId, services: ServicesDep) -> Response:
    """Delete a concept with its photos and vectors."""
    concepts.delete_concept(services, scope=scope, concept_id=concept_id)
    return Response(status_code=204)


@router.post("/{concept_id}/images", status_code=201)
def add_images(
    scope: UserScopeDep,
    concept_id: ResourceId,
    services: ServicesDep,
    images: Images,
) -> ConceptOut:
    """Add photos to a concept."""
    view = concepts.add_images(
        services,
        scope=scope,
        concept_id=concept_id,
        uploads=read_uploads(services, images),
    )
    return ConceptOut.from_view(view)


@router.get(
    "/{concept_id}/images/{image_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "the photo, or its thumbnail"},
        304: {"description": "the thumbnail named by If-None-Match has not changed"},
    },
)
def get_image(
    scope: UserScopeDep,
    concept_id: ResourceId,
    image_id: ResourceId,
    services: ServicesDep,
    size: Annotated[
        int | None,
        Query(
            ge=16,
            le=THUMBNAIL_SIDES[-1],
            description="a thumbnail (JPEG) whose longer side is at most this many pixels "
            f"rounded up to one of {', '.join(map(str, THUMBNAIL_SIDES))} (the only "
            "thumbnails made: every size in one step shares one thumbnail and ETag); never "
            "larger than the photo itself",
        ),
    ] = None,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """The photo's bytes as uploaded, or a thumbnail of it with ``size``."""
    headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if size is None:
        data, media_type = concept_reads.read_image(
            services,
            scope=scope,
            concept_id=concept_id,
            image_id=image_id,
        )
        return Response(data, media_type=media_type, headers=headers)
    thumbnail, etag = concept_reads.read_thumbnail(
        services,
        scope=scope,
        concept_id=concept_id,
        image_id=image_id,
        size=size,
        if_none_match=if_none_match,
    )
    headers["ETag"] = etag
    if thumbnail is None:
        return Response(status_code=304, headers=headers)
    return Response(thumbnail.data, media_type=thumbnail.media_type, headers=headers)


@router.delete("/{concept_id}/images/{image_id}", status_code=204)
def delete_image(
    scope: UserScopeDep,
    concept_id: ResourceId,
    image_id: ResourceId,
    services: ServicesDep,
) -> Response:
    """Delete one photo of a concept (its last one leaves a text-only concept)."""
    concepts.delete_image(
        services,
        scope=scope,
        concept_id=concept_id,
        image_id=image_id,
    )
    return Response(status_code=204)
