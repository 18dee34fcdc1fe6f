"""Decoding of untrusted image bytes.

The bytes decide the format, never a filename or a client's content type. The
pixel count is checked from the header before any pixel is decoded, so a
decompression bomb costs a few microseconds and no memory.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from retrieval.errors import CorruptImage, PayloadTooLarge, TooManyPixels, UnsupportedImage

ORIENTATION = 0x0112  # the EXIF tag

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to one uploaded image."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class DecodedImage:
    """An upload that decoded completely: RGB pixels with EXIF orientation applied."""

    image: Image.Image
    width: int
    height: int
    media_type: str


def decode_image(
    data: bytes, limits: ImageLimits = ImageLimits(), *, min_side: int | None = None
) -> DecodedImage:
    """Decode ``data`` fully or raise an ``ImageRejected`` subclass.

    With ``min_side``, a JPEG may be decoded at a reduced scale (libjpeg's DCT
    scaling) as long as both sides stay at least ``min_side``: several times
    cheaper when the pixels only feed a 224-pixel model. ``width`` and
    ``height`` are always those of the full photo, upright.

    Raises PayloadTooLarge above ``limits.max_bytes``, UnsupportedImage when the
    bytes are not one of MEDIA_TYPES, TooManyPixels above ``limits.max_pixels``
    and CorruptImage when decoding fails part-way (e.g. a truncated file).
    """
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes}")
    if not data:
        raise UnsupportedImage("empty file")
    with warnings.catch_warnings():
        # Pillow only warns between one and two times its own limit; ours is checked below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise UnsupportedImage(
                f"not an image rapport reads; accepted: {', '.join(MEDIA_TYPES.values())}"
            ) from None
        except Image.DecompressionBombError:
            raise TooManyPixels(f"the limit is {limits.max_pixels} pixels") from None
        except Exception:
            raise CorruptImage("the image header could not be read") from None
    if image.format not in MEDIA_TYPES:
        raise UnsupportedImage(
            f"format {image.format} is not accepted; accepted: {', '.join(MEDIA_TYPES.values())}"
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"image is {width}x{height}; the limit is {limits.max_pixels} pixels")
    media_type = MEDIA_TYPES[image.format]
    try:
        if min_side is not None and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        image.load()
        turned = image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
        rgb = _to_rgb(ImageOps.exif_transpose(image))
    except Exception:
        raise CorruptImage("the image data is truncated or corrupt") from None
    upright = (height, width) if turned else (width, height)
    return DecodedImage(image=rgb, width=upright[0], height=upright[1], media_type=media_type)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow has no direct 16/32-bit integer to RGB conversion: scale to 8 bits first.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")
