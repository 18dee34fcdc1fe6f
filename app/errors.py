"""The one table from errors to HTTP statuses, and the handlers that render them.

Every error leaves as application/problem+json (RFC 9457): type, title, status,
detail. An unexpected error is logged and answered with a generic 500; its
message never reaches the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrieval import errors

logger = logging.getLogger(__name__)


class Unauthorized(errors.RapportError):
    title = "Unauthorized"


class NoGenerator(errors.RapportError):
    title = "No generator configured"


STATUS: dict[type[errors.RapportError], int] = {
    Unauthorized: 401,
    NoGenerator: 501,
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


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    headers = {
        401: {"WWW-Authenticate": "Bearer"},
        429: {"Retry-After": str(RETRY_AFTER_S)},
    }.get(status)
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


async def _rapport_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.RapportError)
    status = status_of(error)
    if status >= 500:
        logger.error("%s: %s", type(error).__name__, error.detail)
    return problem(status, error.title, error.detail)


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    issues = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", "")} for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in issues)
    return problem(422, "Invalid request", summary or "invalid request", errors=issues)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(
        error.status_code, "HTTP error"
    )
    response = problem(error.status_code, title, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal server error", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.RapportError, _rapport_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
