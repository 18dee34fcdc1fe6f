from __future__ import annotations

from typing import Any

import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms

from retrieval.encoder import Encoder
from retrieval.images import decode_image
from retrieval.preprocessing import Preprocessing
from tests import factories

IMAGENET = transforms.Compose(
    [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ]
)


def photos_of_every_kind() -> list[Image.Image]:
    real = decode_image(factories.photo("dog", 0)).image
    return [
        real,
        factories.gradient(640, 200),
        factories.gradient(50, 300),
        real.convert("L"),  # grey photos reach the model as three equal channels
        real.convert("RGBA"),
    ]


@pytest.mark.parametrize(
    "pipeline",
    [
        IMAGENET,
        transforms.Compose([transforms.Resize((224, 224)), *IMAGENET.transforms[2:]]),
        open_clip.image_transform(64, is_train=False),
        open_clip.image_transform(224, is_train=False, resize_mode="squash"),
    ],
    ids=["imagenet-crop", "imagenet-squash", "open-clip-64", "open-clip-squash"],
)
def test_split_equals_the_whole_pipeline(pipeline: transforms.Compose) -> None:
    preprocessing = Preprocessing.from_transforms(pipeline)
    assert preprocessing.split
    images = photos_of_every_kind()
    pixels = [preprocessing.pixels(image.convert("RGB")) for image in images]
    assert all(p.dtype == torch.uint8 and p.shape[-1] == 3 for p in pixels)
    batch = preprocessing.batch(pixels, torch.device("cpu"), torch.float32)
    expected = torch.stack([pipeline(image.convert("RGB")) for image in images])
    assert batch.shape == expected.shape and batch.dtype == torch.float32
    assert torch.allclose(batch, expected, atol=1e-5)


def test_a_pipeline_it_cannot_split_runs_whole() -> None:
    # A shorter-side resize with no crop: photos keep different sizes, so pixels
    # cannot be stacked before the pipeline's own tensors are made.
    pipeline = transforms.Compose([transforms.Resize(32), *IMAGENET.transforms[2:]])
    preprocessing = Preprocessing.from_transforms(pipeline)
    assert not preprocessing.split
    image = factories.gradient(64, 64)
    tensor = preprocessing.pixels(image)
    assert torch.equal(tensor, pipeline(image))
    batch = preprocessing.batch([tensor, tensor], torch.device("cpu"), torch.float16)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float16


def test_the_encoder_sends_uint8_pixels_and_normalises_per_batch(encoder: Encoder) -> None:
    image = decode_image(factories.photo("cat", 0)).image
    pixels = encoder.preprocess(image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (64, 64, 3)
    # Same vectors as the model fed through open_clip's own per-photo pipeline.
    reference = open_clip.image_transform(64, is_train=False)(image).unsqueeze(0)
    with torch.inference_mode():
        model: Any = encoder._model
        expected = torch.nn.functional.normalize(model.encode_image(reference), dim=-1)
    assert torch.allclose(torch.from_numpy(encoder.encode_tensors([pixels])), expected, atol=1e-5)
