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

from retrieval import errors

logger = logging.getLogger(__name__)


class Unauthorized(errors.RapportError):
    title = "Unauthorized"


class NoGenerator(errors.RapportError):
    title = "No generator configured"


class RateLimited(errors.RapportError):
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class QuotaExceeded(errors.RapportError):
    title = "Quota exceeded"


class StorageQuotaExceeded(QuotaExceeded):
    title = "Storage quota exceeded"


class RemotePhotoRefused(errors.RapportError):
    """A photo URL that is not fetched: not http(s), not public, redirected away, or off."""

    title = "Photo URL refused"


class RemotePhotoUnavailable(errors.RapportError):
    """A photo URL that could not be fetched: no answer in time, unreachable, an HTTP error."""

    title = "Photo could not be fetched"


class PhotoFileMissing(errors.RapportError):
    """A photo row whose file (or S3 object) is gone: data lost on the server's side."""

    title = "Photo file missing"


class BlobStoreUnavailable(errors.RapportError):
    """The photo store did not answer in time, or refused, after bounded retries.

    At start-up and in /readyz its detail names the setting to fix; a request's
    answer says only that the store is unavailable.
    """

    title = "Photo store unavailable"
    retry_after = 2.0


class DatabaseUnavailable(errors.RapportError):
    """The database cannot be reached, or no connection came free in time."""

    title = "Database unavailable"
    retry_after = 2.0


STATUS: dict[type[errors.RapportError], int] = {
    RemotePhotoRefused: 400,
    RemotePhotoUnavailable: 422,
    DatabaseUnavailable: 503,
    BlobStoreUnavailable: 503,
    PhotoFileMissing: 500,
    Unauthorized: 401,
    NoGenerator: 501,
    RateLimited: 429,
    StorageQuotaExceeded: 413,
    QuotaExceeded: 409,
    errors.GeneratorTimeout: 504,
    errors.GeneratorUnavailable: 502,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidRequest: 422,
    errors.PayloadTooLarge: 413,
    errors.TooManyPixels: 413,
    errors.UnsupportedImage: 415,
    errors.CorruptImage: 422,
    errors.ImageRejected: 422,
    errors.Overloaded: 429,
    errors.ModelLoadError: 503,
    errors.RapportError: 500,
}


def status_of(error: errors.RapportError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


RETRY_AFTER_S = 1


def problem(
    status: int, title: str, detail: str, *, retry_after: float | None = None, **extra: Any
) -> JSONResponse:
    headers = {
        401: {"WWW-Authenticate": "Bearer"},
        429: {"Retry-After": str(max(1, math.ceil(retry_after or RETRY_AFTER_S)))},
        503: {"Retry-After": str(max(1, math.ceil(retry_after or RETRY_AFTER_S)))},
    }.get(status)
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def render(error: errors.RapportError) -> JSONResponse:
    """The problem document of a domain error (errors of 500 and above are logged)."""
    status = status_of(error)
    if status >= 500:
        logger.error("%s: %s", type(error).__name__, error.detail)
    return problem(
        status, error.title, error.detail, retry_after=getattr(error, "retry_after", None)
    )


async def _rapport_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.RapportError)
    return render(error)


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    issues = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", "")} for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in issues)
    return problem(422, "Invalid request", summary or "invalid request", errors=issues)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    title = {
        404: "Not found",
        405: "Method not allowed",
        408: "Request timeout",
        413: "Payload too large",
    }.get(error.status_code, "HTTP error")
    response = problem(error.status_code, title, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal server error", "an unexpected error occurred")


_DATABASE_UNAVAILABLE = (
    sql_errors.OperationalError,
    sql_errors.InterfaceError,
    sql_errors.TimeoutError,
)


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    # Connection-level failures (down, unreachable, no free connection) are retryable 503s;
    # any other database error is a bug, answered as one.
    lost = isinstance(error, sql_errors.DBAPIError) and error.connection_invalidated
    if not (isinstance(error, _DATABASE_UNAVAILABLE) or lost):
        return await _unexpected_error(request, error)
    cause = getattr(error, "orig", None) or error
    logger.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(cause).__name__,
        str(cause).strip(),
    )
    unavailable = DatabaseUnavailable("the database is unavailable; retry shortly")
    return await _rapport_error(request, unavailable)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.RapportError, _rapport_error)
    app.add_exception_handler(sql_errors.DBAPIError, _database_error)
    app.add_exception_handler(sql_errors.TimeoutError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
