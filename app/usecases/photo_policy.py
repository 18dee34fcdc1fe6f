"""The one policy every decode of a photo goes through: uploaded, queried or stored.

Each applies the configured caps (bytes, pixels) and keeps only the pixels its
consumers need: the encoder's input (times the finest grid split for regions)
and, for photos an MLLM sees, the generator's image size. Every decode holds its
pixels from the process's decode budget (``services.decode_budget``) while it
runs, as its owner's (the app whose request it serves; None for offline work).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrieval.config import ImageLimits
from retrieval.decode_budget import PixelHold
from retrieval.errors import InvalidRequest, PayloadTooLarge
from retrieval.images import DecodedImage, decode_cost, decode_image, image_size

if TYPE_CHECKING:
    from app.services import Services

_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class PhotoPolicy:
    limits: ImageLimits
    min_side: int | None = None  # None: keep every pixel
    max_side: int | None = None
    hold: PixelHold | None = None  # None: no decode budget

    @classmethod
    def for_uploads(cls, services: Services, owner: Hashable | None) -> PhotoPolicy:
        """Photos of a concept being registered: embedded once, stored as sent."""
        return cls(
            services.settings.image_limits(),
            services.encoder.input_size,
            None,
            hold=_hold(services, owner),
        )

    @classmethod
    def for_queries(cls, services: Services, owner: Hashable | None) -> PhotoPolicy:
        """Photos asked about: cut into regions and encoded, and shown to the MLLM."""
        settings = services.settings
        return cls(
            settings.image_limits(),
            query_min_side(services),
            settings.generator_image_max_side,
            _hold(services, owner),
        )

    @classmethod
    def for_retrieval(cls, services: Services, owner: Hashable | None) -> PhotoPolicy:
        """Photos of /retrieve: cut into regions and encoded; no MLLM sees them."""
        return cls(
            services.settings.image_limits(), query_min_side(services), None, _hold(services, owner)
        )

    @classmethod
    def for_references(cls, services: Services, owner: Hashable | None) -> PhotoPolicy:
        """Stored photos put into a prompt: only the MLLM sees them."""
        settings = services.settings
        return cls(
            settings.image_limits(), 1, settings.generator_image_max_side, _hold(services, owner)
        )

    @classmethod
    def for_reembedding(cls, services: Services) -> PhotoPolicy:
        """Stored photos embedded again (reindex, offline): the encoder's input only."""
        return cls(
            services.settings.image_limits(),
            services.encoder.input_size,
            None,
            _hold(services, None),
        )

    @classmethod
    def for_thumbnails(cls, services: Services, owner: Hashable | None, size: int) -> PhotoPolicy:
        """Stored photos shown small (the console): the longer side kept at ``size``."""
        return cls(services.settings.image_limits(), 1, size, _hold(services, owner))

    def size_of(self, data: bytes) -> tuple[int, int]:
        """(width, height) from the header, after the byte and pixel caps."""
        return image_size(data, self.limits)

    def cost_of(self, data: bytes) -> int:
        """The pixels ``decode`` would decode (a JPEG's reduced scale), from the header."""
        return decode_cost(data, self.limits, min_side=self.min_side, max_side=self.max_side)

    def decode(self, data: bytes) -> DecodedImage:
        return decode_image(
            data, self.limits, min_side=self.min_side, max_side=self.max_side, hold=self.hold
        )


def _hold(services: Services, owner: Hashable | None) -> PixelHold:
    return services.decode_budget.for_owner(owner)


def query_min_side(services: Services) -> int | None:
    """Pixels a query photo needs: the model's input, times the finest grid's split."""
    settings = services.settings
    size = services.encoder.input_size
    if size is None or settings.regions == "detector":
        return None
    if settings.regions == "grid":
        return size * max(settings.region_grid_scales, default=1)
    return size


def decode_base64_image(value: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of a base64 photo or data URL; one over ``max_bytes`` is refused
    from its length, before it is decoded."""
    payload = "".join(_DATA_URL.sub("", value.strip(), count=1).split())
    if max_bytes is not None and len(payload) > 4 * (max_bytes // 3 + 1):
        raise PayloadTooLarge(f"image is over {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image is neither base64 nor a base64 data URL") from None
