"""Typed errors: one class per problem the server answers, looked up by status and title.

The server answers every error as application/problem+json ``{type, title, status,
detail}``; its titles are stable, so a title names the problem more precisely than a
status alone (409 is a taken name, the last photo of a concept or a quota).
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, ClassVar

import httpx


class RapportError(Exception):
    """Anything this client raises on purpose."""


class TransportError(RapportError):
    """The server could not be reached, or the connection broke before an answer."""


class Timeout(TransportError):
    """No answer within the client's timeout."""


class APIError(RapportError):
    """The server answered with an error status (a problem document).

    ``status``, ``title`` and ``detail`` are the problem's; ``body`` is the whole document
    (validation errors carry ``errors`` there).
    """

    status: ClassVar[int] = 0
    title: ClassVar[str | None] = None

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status  # type: ignore[misc]
        self.title = title  # type: ignore[misc]
        self.detail = detail
        self.body = body or {}
        self.headers = headers or httpx.Headers()


class ClientError(APIError):
    """A 4xx answer without a more precise class."""


class ServerError(APIError):
    """A 5xx answer without a more precise class."""


class PhotoURLRefused(ClientError):
    status, title = 400, "Photo URL refused"


class Unauthorized(ClientError):
    status, title = 401, "Unauthorized"


class NotFound(ClientError):
    status, title = 404, "Not found"


class ConceptNotFound(NotFound):
    status, title = 404, "Concept not found"


class ImageNotFound(NotFound):
    status, title = 404, "Image not found"


class EventNotFound(NotFound):
    status, title = 404, "History event not found"


class RequestTimeout(ClientError):
    status, title = 408, "Request timeout"


class Conflict(ClientError):
    status, title = 409, "Conflict"


class ConceptNameTaken(Conflict):
    status, title = 409, "Concept name already used"


class NegativeIsOwnPhoto(Conflict):
    status, title = 409, "A photo of the concept cannot be one that is not it"


class NotUndoable(Conflict):
    status, title = 409, "This change cannot be undone"


class QuotaExceeded(Conflict):
    status, title = 409, "Quota exceeded"


class PayloadTooLarge(ClientError):
    status, title = 413, "Payload too large"


class TooManyPixels(PayloadTooLarge):
    status, title = 413, "Image has too many pixels"


class StorageQuotaExceeded(PayloadTooLarge):
    status, title = 413, "Storage quota exceeded"


class UnsupportedImage(ClientError):
    status, title = 415, "Unsupported media type"


class InvalidRequest(ClientError):
    status, title = 422, "Invalid request"


class ImageRejected(InvalidRequest):
    status, title = 422, "Image rejected"


class CorruptImage(ImageRejected):
    status, title = 422, "Corrupt image"


class PhotoUnavailable(InvalidRequest):
    status, title = 422, "Photo could not be fetched"


class RateLimited(ClientError):
    """429: slow down; ``retry_after`` is the server's Retry-After in seconds, if any."""

    status, title = 429, "Too many requests"

    @property
    def retry_after(self) -> float | None:
        return retry_after_s(self.headers)


class Overloaded(RateLimited):
    status, title = 429, "Overloaded"


class InternalServerError(ServerError):
    status, title = 500, "Internal server error"


class PhotoFileMissing(InternalServerError):
    status, title = 500, "Photo file missing"


class NoGenerator(ServerError):
    status, title = 501, "No generator configured"


class GeneratorUnavailable(ServerError):
    status, title = 502, "Generator unavailable"


class ServiceUnavailable(ServerError):
    status, title = 503, "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    status, title = 503, "Database unavailable"


class DecodeBusy(ServiceUnavailable):
    """The server is decoding as many photos as it may at once; retry after Retry-After."""

    status, title = 503, "Too many photos being decoded"


class PhotoStoreUnavailable(ServiceUnavailable):
    status, title = 503, "Photo store unavailable"


class ModelLoadError(ServiceUnavailable):
    status, title = 503, "Model could not be loaded"


class GeneratorTimeout(ServerError):
    status, title = 504, "Generator timed out"


def _leaves(cls: type[APIError]) -> list[type[APIError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found += _leaves(sub)
    return found


ERRORS: tuple[type[APIError], ...] = tuple(
    cls for cls in _leaves(APIError) if cls not in (ClientError, ServerError)
)
_BY_TITLE = {(cls.status, cls.title): cls for cls in ERRORS}
# A status whose title is not known: the class of that status's general problem.
_BY_STATUS = {
    cls.status: cls
    for cls in ERRORS
    if cls.__base__ in (ClientError, ServerError) and cls.status not in (400,)
}


def error_class(status: int, title: str | None) -> type[APIError]:
    """The most precise class for a problem of this status and title."""
    cls = _BY_TITLE.get((status, title)) or _BY_STATUS.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else ClientError


def error_from_problem(problem: dict[str, Any], headers: httpx.Headers | None = None) -> APIError:
    """The error of a problem document (also the ``error`` event of a chat stream)."""
    status = int(problem.get("status") or 500)
    title = str(problem.get("title") or "")
    detail = str(problem.get("detail") or title)
    return error_class(status, title)(status, title, detail, body=problem, headers=headers)


def error_from_response(response: httpx.Response) -> APIError:
    """The error an error response means; its body must have been read."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"title": response.reason_phrase, "detail": response.text[:500]}
    body.setdefault("status", response.status_code)
    if body.get("status") != response.status_code:
        body["status"] = response.status_code
    return error_from_problem(body, response.headers)


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
