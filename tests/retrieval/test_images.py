from __future__ import annotations

import pytest
from PIL import Image

from retrieval.config import ImageLimits
from retrieval.errors import CorruptImage, PayloadTooLarge, TooManyPixels, UnsupportedImage
from retrieval.images import decode_image
from tests import factories


def test_decodes_real_photo_to_rgb() -> None:
    decoded = decode_image(factories.photo("dog", 0))
    assert decoded.media_type == "image/jpeg"
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == decoded.image.size == (512, 512)


def test_media_type_comes_from_the_bytes() -> None:
    image = factories.gradient(20, 10)
    for fmt, media_type in (("PNG", "image/png"), ("WEBP", "image/webp"), ("GIF", "image/gif")):
        assert decode_image(factories.encode(image, fmt)).media_type == media_type


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", UnsupportedImage),
        (b"GIF89a but not really", UnsupportedImage),
        (b"%PDF-1.7 a document", UnsupportedImage),
        (factories.encode(factories.gradient(40, 40), "TIFF"), UnsupportedImage),
        (factories.photo("cat", 0)[:3000], CorruptImage),
        (factories.png_claiming_size(100_000, 100_000), TooManyPixels),
    ],
)
def test_rejections(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_image(data)


def test_caps_come_from_the_limits() -> None:
    png = factories.solid_png(100, 100)
    with pytest.raises(PayloadTooLarge):
        decode_image(png, ImageLimits(max_bytes=len(png) - 1))
    with pytest.raises(TooManyPixels):
        decode_image(png, ImageLimits(max_pixels=100 * 100 - 1))
    assert decode_image(png, ImageLimits(max_bytes=len(png), max_pixels=100 * 100)).width == 100


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = factories.gradient(60, 30)
    turn = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(turn[orientation])
    decoded = decode_image(factories.jpeg_with_orientation(stored, orientation))
    assert decoded.image.size == (60, 30)
    # The left edge is dark and the right edge bright once displayed upright.
    left, right = decoded.image.getpixel((2, 15)), decoded.image.getpixel((57, 15))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] < 60 < 200 < right[0]


def test_transparency_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    decoded = decode_image(factories.encode(image))
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)


def test_reduced_scale_decoding_keeps_the_full_size_and_enough_pixels() -> None:
    upright = factories.gradient(800, 600)
    data = factories.jpeg_with_orientation(upright.transpose(Image.Transpose.ROTATE_90), 6)
    full = decode_image(data)
    small = decode_image(data, min_side=224)
    assert (small.width, small.height) == (full.width, full.height) == (800, 600)
    assert min(small.image.size) >= 224
    assert small.image.size[0] < full.image.size[0]
    assert small.image.size[0] / small.image.size[1] == pytest.approx(800 / 600, rel=0.02)
    with pytest.raises(CorruptImage):
        decode_image(factories.photo("cat", 0)[:3000], min_side=64)
