from __future__ import annotations

import pytest
from PIL import Image

from retrieval.config import ImageLimits
from retrieval.errors import CorruptImage, PayloadTooLarge, TooManyPixels, UnsupportedImage
from retrieval.images import AVIF, decode_image, image_size
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


PHONE_FORMATS = [
    ("HEIF", "image/heic"),
    pytest.param(
        "AVIF",
        "image/avif",
        marks=pytest.mark.skipif(not AVIF, reason="this Pillow was built without libavif"),
    ),
]


@pytest.mark.parametrize(("fmt", "media_type"), PHONE_FORMATS)
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_phone_photos_decode_upright(fmt: str, media_type: str, orientation: int) -> None:
    upright = factories.gradient(64, 32)
    turn = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    data = factories.phone_photo(upright.transpose(turn[orientation]), fmt, orientation)
    assert image_size(data) in ((64, 32), (32, 64))
    decoded = decode_image(data)
    assert decoded.media_type == media_type
    assert (decoded.width, decoded.height) == decoded.image.size == (64, 32)
    left, right = decoded.image.getpixel((2, 16)), decoded.image.getpixel((61, 16))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] < 60 < 200 < right[0]
    # Reduced for the encoder, still upright and at least as large as asked.
    small = decode_image(data, min_side=16)
    assert (small.width, small.height) == (64, 32) and small.image.width > small.image.height


@pytest.mark.parametrize(("fmt", "media_type"), PHONE_FORMATS)
def test_phone_photos_are_under_the_same_caps(fmt: str, media_type: str) -> None:
    photo = Image.open(__import__("io").BytesIO(factories.photo("dog", 0)))
    data = factories.phone_photo(photo, fmt)
    assert decode_image(data).media_type == media_type
    with pytest.raises(PayloadTooLarge):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    # The pixel cap is checked from the header, before any pixel is decoded.
    with pytest.raises(TooManyPixels):
        image_size(data, ImageLimits(max_pixels=512 * 512 - 1))
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) * 2 // 3])


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"\xff\x0a\xfa\x7f\x01\x90\x08", "JPEG XL is not accepted"),
        (b"%PDF-1.7 a document", "PDF is not accepted"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG is not accepted"),
        (b"hello, I am not an image", "not accepted: TIFF, JPEG XL, SVG, PDF, camera RAW"),
        (factories.encode(factories.gradient(40, 40), "TIFF"), "format TIFF is not accepted"),
    ],
)
def test_a_refusal_names_the_format_and_what_is_accepted(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedImage) as refused:
        decode_image(data)
    assert named in str(refused.value)
    assert "image/heic" in str(refused.value) and "image/jpeg" in str(refused.value)


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
