"""CLIP encoders (open_clip): photos to L2-normalised vectors with the image tower.

Regions of a photo (``encode_regions``) come from one pass of a ViT: the photo
is squeezed to the model's input square, and each box's vector is the mean of
the patch tokens under it (weighted by how much of each patch the box covers),
through the model's final norm and projection (retrieval/vit_regions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from retrieval.config import RANDOM_WEIGHTS, EncoderConfig
from retrieval.devices import resolve_device
from retrieval.errors import ModelLoadError
from retrieval.hub import open_clip_weights
from retrieval.image_encoder import (
    BatchedImageEncoder,
    seeded,
    warn_random_weights,
    weights_file_id,
)
from retrieval.preprocessing import Preprocessing
from retrieval.regions import Box
from retrieval.vit_regions import pooled_token_vectors, squeezing, token_pooling_supported

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TEST_MODEL = "rapport-test-tiny"


class Encoder(BatchedImageEncoder):
    """Encodes photos into unit-norm vectors with an open_clip model's image tower.

    Build it with ``Encoder.from_config`` (or ``retrieval.encoders.open_encoder``).
    ``squeezed``: the preprocessing that fits a whole photo into the model's input
    square (for ``encode_regions``); None encodes regions as crops.
    """

    def __init__(self, *, squeezed: Preprocessing | None = None, **base: Any) -> None:
        super().__init__(**base)
        supported = token_pooling_supported(self._model)
        self._squeezed = squeezed if supported else None

    @property
    def pools_regions(self) -> bool:
        """Whether ``encode_regions`` pools one pass's patch tokens (ViTs), else crops."""
        return self._squeezed is not None

    def prepare_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> Callable[[], np.ndarray]:
        """The whole photo's vector, then each box's (x0, y0, x1, y1 in its pixels),
        from one forward pass over the photo squeezed to the model's input square
        (squeezed now; the pass when the returned function is called; ``side`` is
        ignored: a ViT's positional embeddings fix its grid). The whole photo's vector
        is the model's own embedding of the squeezed photo; a box's is the mean of the
        patch tokens it covers, through the final norm and projection. Other models
        encode each crop."""
        if self._squeezed is None:
            return super().prepare_regions(image, boxes, side)
        batch = self._squeezed.batch([self._squeezed.pixels(image)], self.device, self._dtype)
        size = image.size
        return lambda: self._pooled(batch, size, boxes)

    def _pooled(
        self, batch: torch.Tensor, size: tuple[int, int], boxes: Sequence[Box]
    ) -> np.ndarray:
        with self._lock, torch.inference_mode():
            features = pooled_token_vectors(self._model, batch, size, boxes)
            vectors = torch.nn.functional.normalize(features.float(), dim=-1)
        return vectors.cpu().numpy().astype(np.float32, copy=False)

    @classmethod
    def from_config(cls, config: EncoderConfig) -> Encoder:
        """Build the model and load its weights, or raise ModelLoadError saying why."""
        import open_clip

        if config.family != "open_clip":
            raise ModelLoadError(
                f"Encoder builds open_clip models, not family {config.family!r}: use open_encoder"
            )

        open_clip.add_model_config(MODEL_CONFIG_DIR)
        known = open_clip.list_models()
        if config.model not in known:
            raise ModelLoadError(f"unknown model {config.model!r}; known: {', '.join(known)}")
        device = resolve_device(config.device)
        precision = "fp16" if device.type == "cuda" else "fp32"
        pretrained, weights_id = _weights_source(open_clip, config)
        keywords: dict[str, object] = {}
        if pretrained is not None and pretrained == weights_id:  # a tag, not a file
            pretrained, keywords = open_clip_weights(open_clip, config.model, pretrained)
        try:
            model, _, preprocess = seeded(
                lambda: open_clip.create_model_and_transforms(
                    config.model,
                    pretrained=pretrained,
                    precision=precision,
                    device=device,
                    **keywords,
                )
            )
        except Exception as error:
            raise ModelLoadError(
                f"could not load weights {config.pretrained!r} for {config.model}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if pretrained is None:
            warn_random_weights(config.model)
        model.eval()
        with torch.inference_mode():
            probe = torch.zeros((1, 3, *_image_size(model)), device=device)
            dim = int(model.encode_image(probe.to(_dtype(precision))).shape[-1])
        return cls(
            squeezed=squeezing(preprocess, _image_size(model)),
            model=model,
            preprocessing=Preprocessing.from_transforms(preprocess),
            model_id=f"{config.model}:{weights_id}",
            dim=dim,
            device=device,
            dtype=_dtype(precision),
            batch_size=config.batch_size,
            # The side of the square the model sees; photos need no more pixels than this.
            input_size=min(_image_size(model)),
        )

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self._model.encode_image(batch)  # type: ignore[operator]
        return features


def model_id_of(config: EncoderConfig) -> str:
    """The id an open_clip encoder built from ``config`` gives its vectors, without
    building it (a local weights file is hashed); ModelLoadError as ``from_config``."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    if config.model not in open_clip.list_models():
        raise ModelLoadError(f"unknown model {config.model!r}")
    return f"{config.model}:{_weights_source(open_clip, config)[1]}"


def _dtype(precision: str) -> torch.dtype:
    return torch.float16 if precision == "fp16" else torch.float32


def _image_size(model: torch.nn.Module) -> tuple[int, int]:
    size = model.visual.image_size  # type: ignore[union-attr]
    if isinstance(size, int):
        return (size, size)
    height, width = size  # type: ignore[misc]
    return (int(height), int(width))


def _weights_source(open_clip: object, config: EncoderConfig) -> tuple[str | None, str]:
    """Return (what open_clip loads, a stable id of those weights for stored vectors)."""
    if config.pretrained.lower() == RANDOM_WEIGHTS:
        return None, RANDOM_WEIGHTS
    path = Path(config.pretrained).expanduser()
    if path.is_file():
        return str(path), weights_file_id(path)
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or "/" in config.pretrained:
        raise ModelLoadError(f"weights file {config.pretrained!r} does not exist")
    tags = open_clip.list_pretrained_tags_by_model(config.model)  # type: ignore[attr-defined]
    if config.pretrained not in tags:
        choices = ", ".join(tags) or "none (use a local weights file)"
        raise ModelLoadError(
            f"unknown pretrained tag {config.pretrained!r} for {config.model}; known: {choices}"
        )
    return config.pretrained, config.pretrained
