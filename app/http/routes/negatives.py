"""Corrections: photos a user says are not a concept ("that is not <bo>")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile

from app.http.deps import ResourceId, ServicesDep, UserScopeDep
from app.http.openapi import USER_DATA_ERRORS
from app.http.routes.concepts import read_uploads
from app.http.schemas import NegativePage
from app.usecases import negatives

router = APIRouter(
    prefix="/v1/users/{user_id}/concepts/{concept_id}/negatives",
    tags=["corrections"],
    responses=USER_DATA_ERRORS,
)

Photos = Annotated[
    list[UploadFile], File(min_length=1, description="one or more photos that are not the concept")
]


@router.post("", status_code=201)
def add_negatives(
    scope: UserScopeDep, concept_id: ResourceId, services: ServicesDep, images: Photos
) -> NegativePage:
    """Mark photos as not this concept: the decision stops claiming it for photos like them."""
    rows = negatives.add_negatives(
        services, scope=scope, concept_id=concept_id, uploads=read_uploads(services, images)
    )
    return NegativePage.from_rows(rows)


@router.get("")
def list_negatives(
    scope: UserScopeDep, concept_id: ResourceId, services: ServicesDep
) -> NegativePage:
    """The photos marked as not this concept, oldest first (bytes at .../images/{id})."""
    rows = negatives.list_negatives(services, scope=scope, concept_id=concept_id)
    return NegativePage.from_rows(rows)


@router.delete("/{image_id}", status_code=204)
def delete_negative(
    scope: UserScopeDep, concept_id: ResourceId, image_id: ResourceId, services: ServicesDep
) -> Response:
    """Remove one correction."""
    negatives.delete_negative(services, scope=scope, concept_id=concept_id, image_id=image_id)
    return Response(status_code=204)
