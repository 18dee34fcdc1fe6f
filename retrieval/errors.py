"""The library's errors. The service maps each class to an HTTP status in one table
(its own domain errors, such as a concept not found, live in app/domain/errors.py).

Every error carries a short ``title`` (stable, safe to show) and a ``detail``
message written for the client; neither ever includes internals.
"""

from __future__ import annotations


class RapportError(Exception):
    """Base of every error rapport reports to a client."""

    title = "Error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)


class InvalidRequest(RapportError):
    title = "Invalid request"


class ImageRejected(RapportError):
    """An uploaded file is not an image rapport accepts."""

    title = "Image rejected"


class PayloadTooLarge(ImageRejected):
    title = "Payload too large"


class UnsupportedImage(ImageRejected):
    title = "Unsupported media type"


class CorruptImage(ImageRejected):
    title = "Corrupt image"


class TooManyPixels(ImageRejected):
    title = "Image has too many pixels"


class Overloaded(RapportError):
    title = "Overloaded"


class DecodeBusy(RapportError):
    """No room in the process's budget of pixels being decoded within a short wait."""

    title = "Too many photos being decoded"
    retry_after = 1.0


class ModelLoadError(RapportError):
    """A model could not be built or its weights could not be loaded."""

    title = "Model could not be loaded"


class GeneratorUnavailable(RapportError):
    """The multimodal LLM could not answer (backend down, failing or answering nonsense)."""

    title = "Generator unavailable"


class GeneratorTimeout(GeneratorUnavailable):
    title = "Generator timed out"
