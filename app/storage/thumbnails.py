"""Downscaled copies of stored photos, made on demand and kept in a bounded LRU."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from retrieval.images import DecodedImage

THUMBNAIL_QUALITY = 85
# The only thumbnails made: a requested size is rounded up to one of these, so walking
# sizes 16..2048 makes at most six per photo, not ~2,000 decodes of a photo of up to
# 40 MP. Each is twice the last: a client gets at most twice the side it asked for, and
# all six together hold about 4/3 of the largest one's pixels.
THUMBNAIL_SIDES = (64, 128, 256, 512, 1024, 2048)


def thumbnail_side(requested: int) -> int:
    """The side of the thumbnail served for ``requested``: the smallest of
    THUMBNAIL_SIDES that is at least ``requested``, the largest one past them all."""
    return next((side for side in THUMBNAIL_SIDES if side >= requested), THUMBNAIL_SIDES[-1])


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    media_type: str


class ThumbnailCache:
    """Thumbnails by (blob key, size), least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], Thumbnail] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int]) -> Thumbnail | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple[str, int], thumbnail: Thumbnail) -> None:
        size = len(thumbnail.data)
        if size > self.max_bytes:
            return
        with self._lock:
            previous = self._items.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous.data)
            self._items[key] = thumbnail
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped.data)


def make_thumbnail(
    data: bytes, media_type: str, size: int, decode: Callable[[bytes], DecodedImage]
) -> Thumbnail:
    """The photo upright, its longer side at most ``size`` pixels, as a JPEG; ``decode``
    applies the service's caps (see PhotoPolicy.for_thumbnails).

    Never larger than the original: a photo already within ``size``, or whose
    thumbnail would take more bytes than it does, is returned as it is.
    """
    decoded = decode(data)
    if max(decoded.width, decoded.height) <= size:
        return Thumbnail(data, media_type)
    image = decoded.image
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    if buffer.tell() >= len(data):
        return Thumbnail(data, media_type)
    return Thumbnail(buffer.getvalue(), "image/jpeg")
