"""Uploads are hostile: every rejection is a clear 4xx and leaves nothing stored."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.settings import Settings
from tests import factories
from tests.app.helpers import assert_problem, register, register_subject, stored
from tests.conftest import LiveServer, make_settings

KIB = 1024


@pytest.fixture
def small_limits(start_server: object, database_url: str, tmp_path: Path) -> LiveServer:
    settings: Settings = make_settings(
        database_url,
        tmp_path / "data",
        max_image_bytes=200 * KIB,
        max_request_bytes=400 * KIB,
        max_image_pixels=1_000_000,
        max_images_per_request=4,
    )
    return start_server(settings)  # type: ignore[operator,no-any-return]


@pytest.fixture
def client(small_limits: LiveServer) -> Iterator[httpx.Client]:
    client = small_limits.client(small_limits.new_key("acme"))
    # One stored concept, so "nothing stored" is checked against a non-empty service.
    register_subject(client, "alice", "dog", count=1)
    yield client


def _noise_png(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    return factories.encode(Image.fromarray(pixels))


TRUNCATED_JPEG = factories.photo("cat", 0)[:5000]
REJECTIONS = {
    "text file named .jpg": ([b"hello, I am not an image" * 10], 415),
    "empty file": ([b""], 415),
    "svg": ([b"<svg xmlns='http://www.w3.org/2000/svg'/>"], 415),
    "truncated jpeg": ([TRUNCATED_JPEG], 422),
    "truncated png": ([factories.solid_png(300, 300)[:-30]], 422),
    "decompression bomb": ([factories.png_claiming_size(50_000, 50_000)], 413),
    "over pixel cap": ([factories.png_claiming_size(1001, 1000)], 413),
    "file over size cap": ([_noise_png(300)], 413),
    "good then bad": ([factories.photo("cat", 1), b"not an image"], 415),
    "too many files": ([factories.solid_png()] * 5, 422),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_registration_leaves_nothing(
    case: str, client: httpx.Client, small_limits: LiveServer
) -> None:
    photos, status = REJECTIONS[case]
    before = stored(small_limits.services)
    assert_problem(register(client, "alice", "new thing", photos), status)
    assert stored(small_limits.services) == before
    concept = client.get("/v1/users/alice/concepts").json()["items"][0]
    added = client.post(
        f"/v1/users/alice/concepts/{concept['id']}/images",
        files=[("images", ("x.jpg", p)) for p in photos],
    )
    assert_problem(added, status)
    assert stored(small_limits.services) == before


def test_request_over_the_body_cap_is_refused(
    client: httpx.Client, small_limits: LiveServer
) -> None:
    before = stored(small_limits.services)
    # Each file is under its own cap; together they pass the request cap.
    photos = [_noise_png(200)] * 4
    assert all(len(p) < 200 * KIB for p in photos) and sum(map(len, photos)) > 400 * KIB
    response = register(client, "alice", "big", photos)
    assert_problem(response, 413)

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the cap must hold while the body streams in.
        yield b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
        for _ in range(100):
            yield b"\0" * (8 * KIB)

    streamed = client.post(
        "/v1/users/alice/concepts",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_problem(streamed, 413)
    assert stored(small_limits.services) == before


def test_exif_orientation_is_applied(client: httpx.Client, small_limits: LiveServer) -> None:
    upright = factories.gradient(120, 80)
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to display.
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    response = register(client, "alice", "turned", [factories.jpeg_with_orientation(sideways, 6)])
    assert response.status_code == 201, response.text
    image = response.json()["images"][0]
    assert (image["width"], image["height"]) == (120, 80)
    encoder = small_limits.services.encoder
    as_uploaded = encoder.encode_images([sideways])[0]
    displayed = encoder.encode_images([Image.open(_roundtrip(upright))])[0]
    found = client.post(
        "/v1/users/alice/retrieve",
        files={"image": ("q.jpg", factories.encode(upright, "JPEG", quality=95))},
        data={"top_k": "1", "min_score": "-1"},
    ).json()["matches"][0]
    assert found["concept"]["name"] == "turned"
    assert found["score"] > 0.99
    assert float(as_uploaded @ displayed) < found["score"]


def _roundtrip(image: Image.Image) -> io.BytesIO:
    return io.BytesIO(factories.encode(image, "JPEG", quality=95))


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("CMYK", "JPEG"), ("I;16", "PNG"), ("P", "GIF"), ("RGBA", "PNG"), ("L", "PNG")],
)
def test_unusual_but_valid_photos_are_accepted(mode: str, fmt: str, client: httpx.Client) -> None:
    image = factories.gradient(40, 30)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 256)
        assert image.mode == "I;16"
    else:
        image = image.convert(mode)
    response = register(client, "alice", f"mode {mode}", [factories.encode(image, fmt)])
    assert response.status_code == 201, response.text
    assert response.json()["images"][0]["width"] == 40


@pytest.mark.parametrize(("fmt", "media_type"), [("HEIF", "image/heic"), ("AVIF", "image/avif")])
def test_phone_photos_register_and_query_upright(
    fmt: str, media_type: str, client: httpx.Client, small_limits: LiveServer
) -> None:
    from retrieval.images import AVIF

    if fmt == "AVIF" and not AVIF:
        pytest.skip("this Pillow was built without libavif")
    # A real photo as an iPhone (HEIC) or an Android phone (AVIF) stores it: sideways
    # pixels and an EXIF orientation that turns them upright.
    upright = Image.open(io.BytesIO(factories.photo("backpack", 0))).convert("RGB")
    upright = upright.resize((upright.width, upright.height * 3 // 4))
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    photos = [factories.phone_photo(sideways, fmt, 6)]
    response = register(client, "alice", f"bag {fmt}", photos)
    assert response.status_code == 201, response.text
    image = response.json()["images"][0]
    assert (image["width"], image["height"], image["media_type"]) == (
        upright.width,
        upright.height,
        media_type,
    )
    # Stored as sent; the thumbnail is a JPEG, upright.
    concept = response.json()["id"]
    path = f"/v1/users/alice/concepts/{concept}/images/{image['id']}"
    original = client.get(path)
    assert original.content == photos[0]
    assert original.headers["content-type"] == media_type
    thumbnail = Image.open(io.BytesIO(client.get(path, params={"size": 128}).content))
    assert thumbnail.format == "JPEG" and thumbnail.width > thumbnail.height
    # The same photo asked about in that format finds the concept, upright.
    found = client.post(
        "/v1/users/alice/retrieve",
        files={"image": ("q", factories.phone_photo(sideways, fmt, 6))},
        data={"top_k": "1", "min_score": "-1"},
    ).json()["matches"][0]
    assert found["concept"]["name"] == f"bag {fmt}" and found["score"] > 0.95
    # Over the caps as any photo is: bytes, and pixels counted from the header.
    big = factories.phone_photo(Image.new("RGB", (1200, 1000), (40, 90, 200)), fmt)
    assert_problem(register(client, "alice", "big", [big]), 413)


def test_a_refused_format_is_named_with_what_is_accepted(client: httpx.Client) -> None:
    refused = register(client, "alice", "jxl", [b"\xff\x0a\xfa\x7f\x01\x90\x08 rest of it"])
    body = assert_problem(refused, 415)
    assert "JPEG XL is not accepted" in body["detail"]
    assert "image/heic" in body["detail"] and "image/avif" in body["detail"]
