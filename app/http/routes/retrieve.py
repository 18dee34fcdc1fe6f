from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from app.http.body_limit import BodyTimeout, BodyTooLarge
from app.http.deps import ServicesDep, UserScopeDep
from app.http.json_body import check_structure
from app.http.openapi import USER_DATA_ERRORS
from app.http.schemas import RetrieveJSON, RetrieveOut
from app.services import Services
from app.timing import Timings
from app.usecases.retrieve import RetrieveQuery, retrieve
from retrieval.errors import InvalidRequest, PayloadTooLarge

router = APIRouter(prefix="/v1/users", tags=["retrieval"], responses=USER_DATA_ERRORS)

_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "anyOf": [{"required": ["image"]}, {"required": ["text"]}],
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "text": {"type": "string", "minLength": 1, "maxLength": 4000},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 100},
        "min_score": {"type": "number", "minimum": -1, "maximum": 1},
    },
}


@router.post(
    "/{user_id}/retrieve",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": RetrieveJSON.model_json_schema()},
                "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
            },
        }
    },
)
async def retrieve_concepts(
    scope: UserScopeDep, request: Request, response: Response, services: ServicesDep
) -> RetrieveOut:
    """Find which of the user's concepts a photo shows or a text names."""
    timings = Timings()
    with timings.stage("parse"):
        query = await _parse(request, services)
    matches = await run_in_threadpool(
        retrieve,
        services,
        scope,
        query=query,
        timings=timings,
    )
    response.headers["Server-Timing"] = timings.header()
    return RetrieveOut.from_matches(matches)


async def _parse(request: Request, services: Services) -> RetrieveQuery:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        # Parsing and base64 decoding of a large body take long enough to stall the loop.
        return await run_in_threadpool(_json_query, await request.body(), services)
    if content_type != "multipart/form-data":
        raise InvalidRequest("send application/json or multipart/form-data")
    settings = services.settings
    form = await _form(request)
    try:
        upload = form.get("image")
        image = None
        if isinstance(upload, UploadFile):
            image = await upload.read(settings.max_image_bytes + 1)
            if len(image) > settings.max_image_bytes:
                raise PayloadTooLarge(f"image is over {settings.max_image_bytes} bytes")
        fields = {k: v for k, v in form.items() if k != "image" and isinstance(v, str)}
        query = _query(RetrieveJSON.model_validate, fields, services)
    finally:
        await form.close()
    return RetrieveQuery(image=image, text=query.text, top_k=query.top_k, min_score=query.min_score)


def _json_query(body: bytes, services: Services) -> RetrieveQuery:
    check_structure(body)
    return _query(RetrieveJSON.model_validate_json, body, services)


def _query(validate: Callable[[Any], RetrieveJSON], raw: Any, services: Services) -> RetrieveQuery:
    try:
        body = validate(raw)
    except ValidationError as error:
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise InvalidRequest(detail) from None
    settings = services.settings
    return body.to_query(
        default_top_k=settings.default_top_k,
        default_min_score=services.default_min_score,
        max_image_bytes=settings.max_image_bytes,
    )


async def _form(request: Request) -> FormData:
    try:
        return await request.form(max_files=1, max_fields=8)
    except (BodyTimeout, BodyTooLarge):
        raise  # 408 and 413, not a malformed body
    except HTTPException as error:  # Starlette's answer to a malformed multipart body
        raise InvalidRequest(f"malformed multipart body: {error.detail}") from None
