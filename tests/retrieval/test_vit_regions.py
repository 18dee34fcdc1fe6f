"""ViT regions from one pass (retrieval/vit_regions.py): shapes, passes, pooling, cost.

Only random open_clip weights exist offline, so these tests check what pooling
promises (one forward pass, which tokens each box averages, the model's own
norm and projection), never retrieval quality.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.encoder import Encoder
from retrieval.images import decode_image
from retrieval.regions import GridRegions
from retrieval.vit_regions import box_weights
from tests import factories


@pytest.fixture
def photo() -> Image.Image:
    return decode_image(factories.photo("dog", 0)).image


def test_regions_come_from_one_forward_pass(encoder: Encoder, photo: Image.Image) -> None:
    assert encoder.pools_regions
    width, height = photo.size
    boxes = GridRegions((2, 3)).boxes(width, height)
    passes: list[tuple[int, ...]] = []
    model: Any = encoder._model
    transformer = model.visual.transformer
    hook = transformer.register_forward_hook(lambda _m, inputs, _o: passes.append(inputs[0].shape))
    try:
        vectors = encoder.encode_regions(photo, boxes)
    finally:
        hook.remove()
    assert len(passes) == 1 and passes[0][0] == 1  # one photo, one pass
    assert vectors.shape == (1 + 13, encoder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert not np.allclose(vectors[1], vectors[4], atol=1e-3)  # boxes pool different tokens
    assert encoder.encode_regions(photo, []).shape == (1, encoder.dim)


def test_a_box_over_the_whole_photo_is_the_mean_token_embedding(
    encoder: Encoder, photo: Image.Image
) -> None:
    """The class-token model's whole box equals the same model pooling by the mean of
    its tokens (open_clip's ``pool_type="avg"``), computed by open_clip itself."""
    width, height = photo.size
    vectors = encoder.encode_regions(photo, [(0, 0, width, height)])
    squeezed = encoder._squeezed
    assert squeezed is not None
    batch = squeezed.batch([squeezed.pixels(photo)], encoder.device, torch.float32)
    model: Any = encoder._model
    averaging = copy.deepcopy(model)
    averaging.visual.pool_type = "avg"
    with torch.inference_mode():
        own = model.encode_image(batch)
        mean_token = averaging.encode_image(batch)
    unit = torch.nn.functional.normalize
    assert np.allclose(vectors[0], unit(own, dim=-1)[0].numpy(), atol=1e-5)
    assert np.allclose(vectors[1], unit(mean_token, dim=-1)[0].numpy(), atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)  # class token != mean token


def test_box_weights_follow_the_covered_share_of_each_patch() -> None:
    # A 4x4 grid over a 64x64 photo: patches of 16 pixels.
    weights = box_weights(
        [(0, 0, 64, 64), (0, 0, 16, 16), (8, 0, 24, 16), (70, 70, 80, 80)], (64, 64), (4, 4)
    )
    assert weights.shape == (4, 16)
    assert torch.allclose(weights.sum(dim=1), torch.ones(4))
    assert torch.allclose(weights[0], torch.full((16,), 1 / 16))
    assert weights[1, 0] == 1 and weights[1, 1:].sum() == 0
    assert torch.allclose(weights[2, :2], torch.tensor([0.5, 0.5])) and weights[2, 2:].sum() == 0
    # A box outside the photo falls back on the nearest patch, never on nothing.
    assert weights[3, 15] == 1


def test_pooling_costs_about_one_pass_not_one_per_crop(
    encoder: Encoder, photo: Image.Image
) -> None:
    width, height = photo.size
    boxes = GridRegions((2, 3)).boxes(width, height)
    crops = [photo.crop(box) for box in boxes]

    def cpu_ms(run: Callable[[], object]) -> float:
        best = np.inf
        for _ in range(5):
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
        return best * 1000

    pooled = cpu_ms(lambda: encoder.encode_regions(photo, boxes))
    cropped = cpu_ms(lambda: encoder.encode_images([photo, *crops]))
    # 14 crops through the model against one pass plus a small matrix product.
    assert pooled < cropped
