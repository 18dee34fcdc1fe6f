"""The one table from errors to HTTP statuses, and the handlers that render them.

Every error leaves as application/problem+json (RFC 9457): type, title, status,
detail. An unexpected error is logged and answered with a generic 500; its
message never reaches the client.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sql_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.domain import errors as domain_errors
from app.http.openai_errors import is_openai_path, openai_error
from retrieval import errors

logger = logging.getLogger(__name__)


STATUS: dict[type[errors.RapportError], int] = {
    domain_errors.RemotePhotoRefused: 400,
    domain_errors.RemotePhotoUnavailable: 422,
    domain_errors.DatabaseUnavailable: 503,
    domain_errors.BlobStoreUnavailable: 503,
    domain_errors.PhotoFileMissing: 500,
    domain_errors.Unauthorized: 401,
    domain_errors.NoGenerator: 501,
    domain_errors.RateLimited: 429,
    domain_errors.StorageQuotaExceeded: 413,
    domain_errors.QuotaExceeded: 409,
    errors.GeneratorTimeout: 504,
    errors.GeneratorUnavailable: 502,
    domain_errors.NotFound: 404,
    domain_errors.Conflict: 409,
    errors.InvalidRequest: 422,
    errors.PayloadTooLarge: 413,
    errors.TooManyPixels: 413,
    errors.UnsupportedImage: 415,
    errors.CorruptImage: 422,
    errors.ImageRejected: 422,
    errors.Overloaded: 429,
    errors.DecodeBusy: 503,
    errors.ModelLoadError: 503,
    errors.RapportError: 500,
}


def status_of(error: errors.RapportError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


RETRY_AFTER_S = 1
# Answers the operator chose (a service without a generator), not faults: logged at INFO.
EXPECTED_5XX = {501}


def problem(
    status: int, title: str, detail: str, *, retry_after: float | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
        headers=_headers(status, retry_after),
    )


def _headers(status: int, retry_after: float | None) -> dict[str, str] | None:
    return {
        401: {"WWW-Authenticate": "Bearer"},
        429: {"Retry-After": str(max(1, math.ceil(retry_after or RETRY_AFTER_S)))},
        503: {"Retry-After": str(max(1, math.ceil(retry_after or RETRY_AFTER_S)))},
    }.get(status)


def error_answer(
    path: str,
    status: int,
    title: str,
    detail: str,
    *,
    retry_after: float | None = None,
    param: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem document, or OpenAI's error shape on the OpenAI-compatible routes."""
    if is_openai_path(path):
        return openai_error(status, title, detail, _headers(status, retry_after), param)
    return problem(status, title, detail, retry_after=retry_after, **extra)


def render(error: errors.RapportError, path: str = "") -> JSONResponse:
    """The answer to a domain error on ``path`` (unexpected errors of 500 and above are
    logged at ERROR; a 501, the operator's choice, at INFO)."""
    status = status_of(error)
    if status in EXPECTED_5XX:
        logger.info("%s: %s", type(error).__name__, error.detail)
    elif status >= 500:
        logger.error("%s: %s", type(error).__name__, error.detail)
    return error_answer(
        path,
        status,
        error.title,
        error.detail,
        retry_after=getattr(error, "retry_after", None),
    )


async def _rapport_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.RapportError)
    return render(error, request.url.path)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    issues = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", "")} for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in issues)
    body_fields = [i["loc"][1] for i in issues if len(i["loc"]) > 1 and i["loc"][0] == "body"]
    return error_answer(
        request.url.path,
        422,
        "Invalid request",
        summary or "invalid request",
        param=str(body_fields[0]) if body_fields else None,
        errors=issues,
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    title = {
        404: "Not found",
        405: "Method not allowed",
        408: "Request timeout",
        413: "Payload too large",
    }.get(error.status_code, "HTTP error")
    response = error_answer(request.url.path, error.status_code, title, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_answer(
        request.url.path, 500, "Internal server error", "an unexpected error occurred"
    )


_DATABASE_UNAVAILABLE = (
    sql_errors.OperationalError,
    sql_errors.InterfaceError,
    sql_errors.TimeoutError,
)


DATABASE_ERRORS = (sql_errors.DBAPIError, sql_errors.TimeoutError)


def database_unavailable(error: Exception, where: str) -> errors.RapportError | None:
    """DatabaseUnavailable (503 + Retry-After) for a connection-level failure (down,
    unreachable, no free connection), logged once; None for any other database error,
    which is a bug and answered as one."""
    lost = isinstance(error, sql_errors.DBAPIError) and error.connection_invalidated
    if not (isinstance(error, _DATABASE_UNAVAILABLE) or lost):
        return None
    cause = getattr(error, "orig", None) or error
    logger.warning(
        "database unavailable on %s: %s: %s", where, type(cause).__name__, str(cause).strip()
    )
    return domain_errors.DatabaseUnavailable("the database is unavailable; retry shortly")


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    unavailable = database_unavailable(error, f"{request.method} {request.url.path}")
    if unavailable is None:
        return await _unexpected_error(request, error)
    return await _rapport_error(request, unavailable)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.RapportError, _rapport_error)
    app.add_exception_handler(sql_errors.DBAPIError, _database_error)
    app.add_exception_handler(sql_errors.TimeoutError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
