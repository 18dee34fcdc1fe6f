"""Decoding of untrusted image bytes.

The bytes decide the format, never a filename or a client's content type. The
pixel count is checked from the header before any pixel is decoded, so a
decompression bomb costs a few microseconds and no memory.
"""

from __future__ import annotations

import io
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError, features

from retrieval.config import ImageLimits
from retrieval.decode_budget import PixelHold
from retrieval.errors import CorruptImage, PayloadTooLarge, TooManyPixels, UnsupportedImage

ORIENTATION = 0x0112  # the EXIF tag

# Phones' photos: HEIC/HEIF (iPhones, many Androids) through pillow-heif, which applies
# the container's rotation when it opens one (the EXIF tag then reads 1); AVIF through
# Pillow's own plugin where Pillow was built with libavif.
pillow_heif.register_heif_opener()
AVIF = features.check("avif")

# The one list of the photos rapport accepts: Pillow's format, its media type, and the file
# suffixes photos of it have (the first is the one an export writes).
PHOTO_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "JPEG": ("image/jpeg", (".jpg", ".jpeg")),
    "PNG": ("image/png", (".png",)),
    "WEBP": ("image/webp", (".webp",)),
    "GIF": ("image/gif", (".gif",)),
    "BMP": ("image/bmp", (".bmp",)),
    # Multi-picture JPEG (phones with depth or portrait photos): its first frame is a JPEG,
    # and its files are named as JPEGs.
    "MPO": ("image/jpeg", ()),
    # HEIC/HEIF through pillow-heif; phones' files are HEVC-coded, so image/heic.
    "HEIF": ("image/heic", (".heic", ".heif")),
    **({"AVIF": ("image/avif", (".avif",))} if AVIF else {}),
}
MEDIA_TYPES = {format_: media_type for format_, (media_type, _) in PHOTO_TYPES.items()}
# What a folder of photos (``rapport import``, ``rapport eval``) reads, by file name.
PHOTO_SUFFIXES = frozenset(suffix for _, suffixes in PHOTO_TYPES.values() for suffix in suffixes)
# The suffix of a stored photo's file, by its media type.
SUFFIX_OF = {media_type: suffixes[0] for media_type, suffixes in PHOTO_TYPES.values() if suffixes}
# Formats named in a refusal, by their first bytes, when no plugin reads them here.
_REFUSED = (
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"%PDF", "PDF"),
    (b"<?xml", "SVG or XML"),
    (b"<svg", "SVG"),
)
REFUSED = "TIFF, JPEG XL, SVG, PDF, camera RAW" + ("" if AVIF else ", AVIF")
_JPEG_FAMILY = ("JPEG", "MPO")


@dataclass(frozen=True)
class DecodedImage:
    """An upload that decoded completely: RGB pixels with EXIF orientation applied."""

    image: Image.Image
    width: int
    height: int
    media_type: str


def image_size(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[int, int]:
    """Width and height from the header alone, after the byte, format and pixel checks.

    Costs microseconds and no pixel memory: callers use it to count a request's
    pixels before decoding any photo of it. Raises like ``decode_image``.
    """
    return _open(data, limits).size


def decode_cost(
    data: bytes,
    limits: ImageLimits = ImageLimits(),
    *,
    min_side: int | None = None,
    max_side: int | None = None,
) -> int:
    """The pixels ``decode_image`` with these sides would decode: the header's, or for a
    JPEG the reduced scale it is decoded at. From the header alone, like ``image_size``."""
    image = _open(data, limits)
    try:
        _draft(image, min_side, max_side)
        return image.size[0] * image.size[1]
    finally:
        image.close()


def decode_image(
    data: bytes,
    limits: ImageLimits = ImageLimits(),
    *,
    min_side: int | None = None,
    max_side: int | None = None,
    hold: PixelHold | None = None,
) -> DecodedImage:
    """Decode ``data`` fully or raise an ``ImageRejected`` subclass.

    With ``min_side``, the pixels may be made smaller as long as both sides stay
    at least ``min_side``: a JPEG is decoded at a reduced scale (libjpeg's DCT
    scaling, several times cheaper), any other format is downscaled right after
    decoding, so only the reduced image is kept. ``max_side`` relaxes that:
    the longer side also stays at least ``max_side`` (a photo that an MLLM
    sees too). ``width`` and ``height`` are always those of the full photo,
    upright. ``hold`` (a DecodeBudget's) holds the pixels decoded while the
    decode runs, or raises DecodeBusy.

    Raises PayloadTooLarge above ``limits.max_bytes``, UnsupportedImage when the
    bytes are not one of MEDIA_TYPES, TooManyPixels above ``limits.max_pixels``
    and CorruptImage when decoding fails part-way (e.g. a truncated file).
    """
    image = _open(data, limits)
    width, height = image.size
    media_type = MEDIA_TYPES[image.format or ""]
    try:
        _draft(image, min_side, max_side)
        with hold(image.size[0] * image.size[1]) if hold else nullcontext():
            rgb, turned = _load(image, min_side, max_side)
    finally:
        image.close()
    upright = (height, width) if turned else (width, height)
    return DecodedImage(image=rgb, width=upright[0], height=upright[1], media_type=media_type)


def _draft(image: Image.Image, min_side: int | None, max_side: int | None) -> None:
    if min_side is not None and image.format in _JPEG_FAMILY:
        try:
            image.draft("RGB", _target(image.size, min_side, max_side))
        except Exception:
            raise CorruptImage("the image data is truncated or corrupt") from None


def _load(
    image: Image.Image, min_side: int | None, max_side: int | None
) -> tuple[Image.Image, bool]:
    """The image decoded, upright, RGB and reduced; and whether EXIF turned it."""
    try:
        image.load()
        turned = image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
        rgb = _to_rgb(ImageOps.exif_transpose(image))
    except Exception:
        raise CorruptImage("the image data is truncated or corrupt") from None
    if min_side is not None:
        rgb = _reduced(rgb, min_side, max_side)
    return rgb, turned


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    """The lazily decoded image, its header checked against ``limits``."""
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
            raise _unread(data) from None
        except Image.DecompressionBombError:
            raise TooManyPixels(f"the limit is {limits.max_pixels} pixels") from None
        except Exception:
            raise CorruptImage("the image header could not be read") from None
    if image.format not in MEDIA_TYPES:
        raise UnsupportedImage(
            f"format {image.format} is not accepted; accepted: {_accepted()} "
            "(convert other photos to JPEG)"
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"image is {width}x{height}; the limit is {limits.max_pixels} pixels")
    return image


def _accepted() -> str:
    return ", ".join(sorted(set(MEDIA_TYPES.values())))


def _unread(data: bytes) -> UnsupportedImage | CorruptImage:
    """Why bytes that no plugin opens are refused, naming their format where it is known."""
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        if AVIF:  # libavif read the brand, then not the rest: a damaged file
            return CorruptImage("the image header could not be read")
        return UnsupportedImage(
            f"AVIF is not accepted by this build; accepted: {_accepted()} (convert it to JPEG)"
        )
    head = data[:64].lstrip()
    named = next((name for magic, name in _REFUSED if head.startswith(magic)), None)
    if named is not None:
        return UnsupportedImage(
            f"{named} is not accepted; accepted: {_accepted()} (convert it to JPEG)"
        )
    return UnsupportedImage(
        f"not an image rapport reads; accepted: {_accepted()}; not accepted: {REFUSED}"
    )


def _target(size: tuple[int, int], min_side: int, max_side: int | None) -> tuple[int, int]:
    """The smallest size, same aspect, whose shorter side is at least ``min_side`` and
    whose longer side is at least ``max_side``: never larger than ``size``."""
    short, long = min(size), max(size)
    factor = min(1.0, max(min_side / max(short, 1), (max_side or 0) / max(long, 1)))
    return (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))


def _reduced(image: Image.Image, min_side: int, max_side: int | None) -> Image.Image:
    target = _target(image.size, min_side, max_side)
    if target[0] >= image.width or target[1] >= image.height:
        return image
    return image.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow has no direct 16/32-bit integer to RGB conversion: scale to 8 bits first.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")
