"""The service's own domain errors: about concepts, photos and tenants, not models.

FastAPI-free, so use cases and the repository raise them without loading the web
stack; app/http/errors.py maps each class to its HTTP status. Errors of the library
(image rejected, overloaded, generator unavailable, ...) stay in retrieval.errors.
"""

from __future__ import annotations

from retrieval.errors import RapportError


class NotFound(RapportError):
    title = "Not found"


class ConceptNotFound(NotFound):
    title = "Concept not found"


class ImageNotFound(NotFound):
    title = "Image not found"


class Conflict(RapportError):
    title = "Conflict"


class ConceptNameTaken(Conflict):
    title = "Concept name already used"


class EventNotFound(NotFound):
    title = "History event not found"


class NotUndoable(Conflict):
    title = "This change cannot be undone"


class NegativeIsOwnPhoto(Conflict):
    title = "A photo of the concept cannot be one that is not it"


class Unauthorized(RapportError):
    title = "Unauthorized"


class NoGenerator(RapportError):
    title = "No generator configured"


class RateLimited(RapportError):
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class QuotaExceeded(RapportError):
    title = "Quota exceeded"


class StorageQuotaExceeded(QuotaExceeded):
    title = "Storage quota exceeded"


class RemotePhotoRefused(RapportError):
    """A photo URL that is not fetched: not http(s), not public, redirected away, or off."""

    title = "Photo URL refused"


class RemotePhotoUnavailable(RapportError):
    """A photo URL that could not be fetched: no answer in time, unreachable, an HTTP error."""

    title = "Photo could not be fetched"


class PhotoFileMissing(RapportError):
    """A photo row whose file (or S3 object) is gone: data lost on the server's side."""

    title = "Photo file missing"


class BlobStoreUnavailable(RapportError):
    """The photo store did not answer in time, or refused, after bounded retries.

    At start-up and in /readyz its detail names the setting to fix; a request's
    answer says only that the store is unavailable.
    """

    title = "Photo store unavailable"
    retry_after = 2.0


class DatabaseUnavailable(RapportError):
    """The database cannot be reached, or no connection came free in time."""

    title = "Database unavailable"
    retry_after = 2.0
