"""The service's own domain errors: about concepts, photos and tenants, not models.

FastAPI-free, so use cases and the repository raise them without loading the web
stack; app/errors.py maps each class to its HTTP status. Errors of the library
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


class LastImage(Conflict):
    title = "Cannot delete the last image of a concept"
