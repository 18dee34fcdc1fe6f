from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from retrieval.config import EncoderConfig
from retrieval.encoder import Encoder
from retrieval.encoders import model_id_of
from retrieval.errors import ModelLoadError
from retrieval.images import decode_image
from tests import factories


def test_vectors_are_unit_norm_and_batch_independent(encoder: Encoder) -> None:
    images = [decode_image(factories.photo("dog", i)).image for i in range(3)]
    batch = encoder.encode_images(images)
    assert batch.shape == (3, encoder.dim) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([encoder.encode_images([image]) for image in images])
    assert np.allclose(batch, one_by_one, atol=1e-5)
    assert encoder.encode_images([]).shape == (0, encoder.dim)


def test_random_weights_are_the_same_in_every_build(encoder: Encoder) -> None:
    image = decode_image(factories.photo("cat", 0)).image
    again = Encoder.from_config(EncoderConfig(model="rapport-test-tiny", pretrained="none"))
    assert again.model_id == encoder.model_id == "rapport-test-tiny:none"
    assert np.allclose(again.encode_images([image]), encoder.encode_images([image]), atol=1e-6)


def test_model_id_of_matches_the_built_encoder_without_building_it(
    encoder: Encoder, tmp_path: Path
) -> None:
    import torch

    assert model_id_of(EncoderConfig(model="rapport-test-tiny", pretrained="none")) == (
        encoder.model_id
    )
    path = tmp_path / "tiny.pt"
    torch.save(encoder._model.state_dict(), path)
    local = EncoderConfig(model="rapport-test-tiny", pretrained=str(path))
    assert model_id_of(local) == Encoder.from_config(local).model_id
    tv = EncoderConfig(model="mobilenet_v2", pretrained="none", family="torchvision")
    assert model_id_of(tv) == "torchvision/mobilenet_v2:none"
    with pytest.raises(ModelLoadError, match="unknown"):
        model_id_of(EncoderConfig(model="no-such-model", pretrained="none"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_id_of(EncoderConfig(model="rapport-test-tiny", pretrained=str(tmp_path / "x.pt")))


def test_weights_from_a_local_file(encoder: Encoder, tmp_path: object) -> None:
    import torch

    path = tmp_path / "tiny.pt"  # type: ignore[operator]
    torch.save(encoder._model.state_dict(), path)
    loaded = Encoder.from_config(EncoderConfig(model="rapport-test-tiny", pretrained=str(path)))
    assert loaded.model_id.startswith("rapport-test-tiny:sha256-")
    image = decode_image(factories.photo("cat", 0)).image
    assert np.allclose(loaded.encode_images([image]), encoder.encode_images([image]), atol=1e-5)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (EncoderConfig(model="ViT-Nope"), "unknown model 'ViT-Nope'; known: "),
        (EncoderConfig(model="ViT-B-32", pretrained="/missing/weights.bin"), "does not exist"),
        (EncoderConfig(model="ViT-B-32", pretrained="nonsense_tag"), "known: "),
    ],
)
def test_bad_configs_say_what_is_valid(config: EncoderConfig, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        Encoder.from_config(config)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_in_half_precision_and_agrees_with_cpu(encoder: Encoder) -> None:
    gpu = Encoder.from_config(
        EncoderConfig(model="rapport-test-tiny", pretrained="none", device="cuda")
    )
    # open_clip's fp16 keeps some parameters (embeddings, norms) in fp32; the layers are fp16.
    model: Any = gpu._model
    assert model.visual.conv1.weight.dtype == torch.float16
    images = [decode_image(factories.photo(subject, 0)).image for subject in ("dog", "cat")]
    on_gpu = gpu.encode_images(images)
    assert on_gpu.dtype == np.float32
    assert np.allclose(np.linalg.norm(on_gpu, axis=1), 1.0, atol=1e-3)
    # fp16 on the GPU, uint8 pixels normalised there: the same vectors as on the CPU.
    assert np.all(np.sum(on_gpu * encoder.encode_images(images), axis=1) > 0.99)
