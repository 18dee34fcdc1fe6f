"""A chat request's messages made into turns, with every cost bounded before it is paid.

Order matters: the photos of the whole conversation are counted and its text is
measured first (no fetch, no decode); then each photo is fetched or decoded from
base64 one at a time, its pixels counted from the header against the request's
pixel budget before any pixel is decoded, and only a reduced copy (the size the
encoder and the MLLM need) is kept. A request over any bound costs microseconds.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.security.remote_photos import RemotePhotoPolicy, fetch_photo
from app.usecases.chat import ChatQuery
from app.usecases.memory_modes import MemoryMode
from app.usecases.photo_policy import PhotoPolicy, decode_base64_image
from retrieval.errors import InvalidRequest, PayloadTooLarge
from retrieval.generators import GenerationOptions
from retrieval.prompt import ChatTurn

if TYPE_CHECKING:
    from app.services import Services


@dataclass(frozen=True)
class RawTurn:
    """One message as sent: its texts and its photos (base64, data URL or http(s) URL)."""

    role: Literal["system", "user", "assistant"]
    texts: tuple[str, ...] = ()
    photos: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatInput:
    """A chat request as sent: its turns, and the options it sets (None: the default)."""

    turns: tuple[RawTurn, ...]
    top_k: int | None = None
    min_score: float | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    memory: MemoryMode | None = None


@dataclass(frozen=True)
class ChatLimits:
    """The bounds of one chat request (from settings)."""

    max_images: int
    max_pixels: int
    max_message_chars: int
    max_request_chars: int
    photos: PhotoPolicy
    remote: RemotePhotoPolicy

    @classmethod
    def of(cls, services: Services, owner: Hashable | None) -> ChatLimits:
        settings = services.settings
        return cls(
            max_images=settings.max_images_per_request,
            max_pixels=settings.max_request_pixels,
            max_message_chars=settings.max_message_chars,
            max_request_chars=settings.max_request_text_chars,
            photos=PhotoPolicy.for_queries(services, owner),
            remote=RemotePhotoPolicy.from_settings(settings),
        )


@dataclass(frozen=True)
class ChatDefaults:
    """What a chat request leaves unsaid, and its bounds, from the service's settings."""

    top_k: int
    min_score: float | None
    max_new_tokens: int
    max_new_tokens_limit: int
    limits: ChatLimits

    @classmethod
    def of(cls, services: Services, owner: Hashable | None) -> ChatDefaults:
        settings = services.settings
        return cls(
            top_k=settings.default_top_k,
            min_score=services.default_min_score,
            max_new_tokens=settings.default_max_new_tokens,
            max_new_tokens_limit=settings.max_new_tokens_limit,
            limits=ChatLimits.of(services, owner),
        )

    def query(self, request: ChatInput) -> ChatQuery:
        """The query, its photos fetched and decoded under ``limits`` (blocking).

        Raises InvalidRequest for ``max_new_tokens`` over the limit, before any photo.
        """
        max_new_tokens = request.max_new_tokens or self.max_new_tokens
        if max_new_tokens > self.max_new_tokens_limit:
            raise InvalidRequest(
                f"max_new_tokens is {max_new_tokens}; the limit is {self.max_new_tokens_limit}"
            )
        return ChatQuery(
            turns=read_turns(request.turns, self.limits),
            top_k=request.top_k or self.top_k,
            min_score=self.min_score if request.min_score is None else request.min_score,
            options=GenerationOptions(
                max_new_tokens=max_new_tokens, temperature=request.temperature or 0.0
            ),
            memory=request.memory,
        )


def read_query(services: Services, request: ChatInput, owner: Hashable | None) -> ChatQuery:
    """``request`` with the service's defaults and bounds (blocking: fetches may wait);
    its photos decode as ``owner``'s (the app's) in the decode budget."""
    return ChatDefaults.of(services, owner).query(request)


def read_turns(raw: Sequence[RawTurn], limits: ChatLimits) -> list[ChatTurn]:
    """The conversation's turns with their photos decoded (blocking: fetches may wait).

    Raises InvalidRequest for too many photos or too long a message, and
    PayloadTooLarge for too much text or too many pixels in the request, each
    before the work it would cost.
    """
    check_bounds(raw, limits)
    budget = limits.max_pixels
    turns = []
    for turn in raw:
        images = []
        for reference in turn.photos:
            data = _photo_bytes(reference, limits)
            width, height = limits.photos.size_of(data)
            budget -= width * height
            if budget < 0:
                raise PayloadTooLarge(
                    f"the photos of this request have more than {limits.max_pixels} pixels "
                    "together (RAPPORT_MAX_REQUEST_PIXELS)"
                )
            images.append(limits.photos.decode(data).image)
            del data  # the encoded bytes are not needed once decoded
        text = "\n".join(t for t in turn.texts if t)
        turns.append(ChatTurn(role=turn.role, text=text, images=tuple(images)))
    return turns


def check_bounds(raw: Sequence[RawTurn], limits: ChatLimits) -> None:
    """Photo count and text length of the whole request: no fetch, no decode."""
    count = sum(len(turn.photos) for turn in raw)
    if count > limits.max_images:
        raise InvalidRequest(
            f"{count} photos in one conversation; the limit is {limits.max_images}"
        )
    total = 0
    for number, turn in enumerate(raw, start=1):
        chars = sum(len(text) for text in turn.texts)
        if chars > limits.max_message_chars:
            raise InvalidRequest(
                f"message {number} has {chars} characters of text; the limit is "
                f"{limits.max_message_chars} (RAPPORT_MAX_MESSAGE_CHARS)"
            )
        total += chars
    if total > limits.max_request_chars:
        raise PayloadTooLarge(
            f"the messages have {total} characters of text together; the limit is "
            f"{limits.max_request_chars} (RAPPORT_MAX_REQUEST_TEXT_CHARS)"
        )


def _photo_bytes(reference: str, limits: ChatLimits) -> bytes:
    if reference[:8].lower().startswith(("http://", "https://")):
        return fetch_photo(reference, limits.remote)
    return decode_base64_image(reference, max_bytes=limits.photos.limits.max_bytes)
