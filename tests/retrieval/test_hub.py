"""Weights from the hub cache without network, and a fast one-line failure without them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from huggingface_hub import constants

from retrieval.config import EncoderConfig, RegionConfig
from retrieval.encoder import Encoder
from retrieval.errors import ModelLoadError
from retrieval.images import decode_image
from retrieval.regions import DetectorRegions
from tests import factories
from tests.app.processes import free_port

TAG = "rapport-cached"
REPO = "rapport-tests/tiny-clip"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty hub cache and a hub that refuses connections."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    return cache


@pytest.fixture
def tagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pretrained tag of the tiny model whose weights live in hub repo REPO (open_clip's
    registry has no public way to add one)."""
    tags = open_clip.list_pretrained_tags_by_model
    configs = open_clip.get_pretrained_cfg
    entry = {"hf_hub": f"{REPO}/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    monkeypatch.setattr(
        open_clip, "list_pretrained_tags_by_model", lambda model: [*tags(model), TAG]
    )
    monkeypatch.setattr(
        open_clip, "get_pretrained_cfg", lambda m, t: entry if t == TAG else configs(m, t)
    )


def test_tag_weights_in_the_cache_load_without_the_hub(
    hub: Path, tagged: None, encoder: Encoder
) -> None:
    # The hub cache's layout: refs/main names the snapshot folder that holds the files.
    repo = hub / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(1)  # weights unlike the seeded random ones the tag would fall back to
    weights = open_clip.create_model("rapport-test-tiny").eval()
    torch.save(weights.state_dict(), snapshot / "open_clip_pytorch_model.bin")

    started = time.monotonic()
    cached = Encoder.from_config(EncoderConfig(model="rapport-test-tiny", pretrained=TAG))

    assert time.monotonic() - started < 10
    assert cached.model_id == f"rapport-test-tiny:{TAG}"
    image = decode_image(factories.photo("dog", 0)).image
    pixels = cached._preprocessing.batch([cached.preprocess(image)], cached.device, torch.float32)
    with torch.inference_mode():
        saved = torch.nn.functional.normalize(weights.encode_image(pixels), dim=-1).numpy()
    # The cached file's weights, not the seeded random ones.
    assert np.allclose(cached.encode_images([image]), saved, atol=1e-5)
    assert not np.allclose(encoder.encode_images([image]), saved, atol=1e-3)
    # The tag's own preprocessing, not the model's default.
    # The tag's own normalisation ((x - 0.5) / 0.5), not the model's default.
    assert cached._preprocessing._shift.flatten().tolist() == pytest.approx([-1.0, -1.0, -1.0])


def test_missing_tag_weights_fail_at_once_when_the_hub_does_not_answer(
    hub: Path, tagged: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = EncoderConfig(model="rapport-test-tiny", pretrained=TAG)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot be reached") as refused:
        Encoder.from_config(config)
    assert time.monotonic() - started < 5
    assert f"not in the Hugging Face cache {hub}" in refused.value.detail

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        Encoder.from_config(config)
    assert time.monotonic() - started < 2


def test_a_detector_not_in_the_cache_fails_at_once_offline(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = RegionConfig(kind="detector", detector_model="rapport-tests/no-such-detector")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        DetectorRegions.from_config(config)
    assert time.monotonic() - started < 5
