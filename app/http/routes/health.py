from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from app.domain.errors import BlobStoreUnavailable
from app.http.deps import ServicesDep

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
# HEAD too (load balancers and uptime checks often probe with it); one operation in OpenAPI.
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,
    responses={503: {"description": "not ready", "content": {"application/json": {}}}},
)
@router.head("/readyz", include_in_schema=False)
def readyz(services: ServicesDep) -> JSONResponse:
    """The database and the photo store answer, and the encoder is loaded."""
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return JSONResponse({"status": "not ready", "database": "unreachable"}, status_code=503)
    try:
        services.blobs.check()
    except BlobStoreUnavailable as error:
        logger.warning("not ready: %s", error.detail)
        return JSONResponse({"status": "not ready", "photo_store": "unreachable"}, status_code=503)
    return JSONResponse(
        {
            "status": "ready",
            "database": "ok",
            "photo_store": "ok",
            "encoder": services.encoder.model_id,
        }
    )


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics of this process, or of all its workers (route templates, never ids)."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
