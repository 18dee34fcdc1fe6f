"""Image-only encoders: torchvision ImageNet classifiers without their last layer.

Their pooled features find photos of the same subject well, but they have no
text tower: text search raises TextSearchUnsupported. Built with
``open_encoder(EncoderConfig(family="torchvision", model="mobilenet_v2", ...))``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from retrieval.encoder import RANDOM_WEIGHTS, EncoderConfig, forward_in_batches, resolve_device
from retrieval.errors import ModelLoadError, TextSearchUnsupported
from retrieval.preprocessing import Preprocessing

logger = logging.getLogger(__name__)

# Classifiers whose last nn.Linear is the ImageNet head, so that removing it
# leaves globally pooled features.
KNOWN_MODELS = (
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "resnet18",
    "resnet50",
    "vit_b_16",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchvisionEncoder:
    """Encodes photos (never text) into unit-norm vectors; same surface as ``Encoder``.

    ``center_crop`` follows ImageNet evaluation (shorter side to 256, centre
    224x224); without it the whole photo is squeezed to 224x224, so nothing
    near the borders is cut off. ``input_size`` is the shorter side a photo
    needs, like ``Encoder.input_size``: more pixels are only resized away.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        model_id: str,
        dim: int,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int,
        center_crop: bool = True,
    ) -> None:
        from torchvision import transforms

        self._model = model
        self.model_id = model_id
        self.dim = dim
        self.device = device
        self._dtype = dtype
        self._batch_size = batch_size
        self._lock = threading.Lock()
        # ImageNet evaluation resizes the shorter side to 256 before the 224 crop.
        self.input_size = 256 if center_crop else 224
        if center_crop:
            resize = [transforms.Resize(256), transforms.CenterCrop(224)]
        else:
            resize = [transforms.Resize((224, 224))]
        self._preprocessing = Preprocessing.from_transforms(
            transforms.Compose(
                [*resize, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
            )
        )

    @property
    def supports_text(self) -> bool:
        return False

    @classmethod
    def from_config(cls, config: EncoderConfig, *, center_crop: bool = True) -> TorchvisionEncoder:
        """Build ``config.model`` with weights from the file ``config.pretrained``.

        ``pretrained="none"`` gives seeded random weights (tests only). Raises
        ModelLoadError for an unknown model, a missing file or weights that do
        not fit the model.
        """
        import torchvision

        weights_path, weights_id = _checked_weights(config)
        with torch.random.fork_rng(devices=[]):
            # Seeded like the open_clip path: random vectors stay comparable across processes.
            torch.manual_seed(0)
            model = torchvision.models.get_model(config.model, weights=None)
        if weights_path is None:
            logger.warning(
                "encoder %s runs on RANDOM weights: retrieval results are meaningless "
                "(fine for tests, never for users)",
                config.model,
            )
        else:
            _load_weights(model, weights_path, config)
        _drop_classifier(model)
        device = resolve_device(config.device)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        model = model.eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)
        with torch.inference_mode():
            probe = torch.zeros((1, 3, 224, 224), device=device, dtype=dtype)
            dim = int(model(probe).shape[-1])
        return cls(
            model=model,
            model_id=f"torchvision/{config.model}:{weights_id}",
            dim=dim,
            device=device,
            dtype=dtype,
            batch_size=config.batch_size,
            center_crop=center_crop,
        )

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB photo resized (and cropped) ImageNet style, as ``uint8`` pixels; the
        normalisation runs per batch in ``encode_tensors``."""
        return self._preprocessing.pixels(image)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors (float32, shape (n, dim), unit norm) for RGB photos, in order."""
        return self.encode_tensors([self.preprocess(image) for image in images])

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Vectors for already preprocessed photos (see ``preprocess``)."""
        return forward_in_batches(
            tensors,
            forward=self._forward,
            collate=lambda chunk: self._preprocessing.batch(chunk, self.device, self._dtype),
            dim=self.dim,
            batch_size=self._batch_size,
            lock=self._lock,
        )

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        # Depthwise convolutions run about 1.5x faster on CPU in this layout.
        features: torch.Tensor = self._model(batch.contiguous(memory_format=torch.channels_last))
        return features

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Always raises TextSearchUnsupported: this model has no text tower."""
        raise TextSearchUnsupported(
            f"{self.model_id} encodes photos only; search by text needs a CLIP model"
        )


def torchvision_model_id(config: EncoderConfig) -> str:
    """``TorchvisionEncoder.from_config(config).model_id`` without building the model."""
    return f"torchvision/{config.model}:{_checked_weights(config)[1]}"


def _checked_weights(config: EncoderConfig) -> tuple[Path | None, str]:
    if config.model not in KNOWN_MODELS:
        raise ModelLoadError(
            f"unknown torchvision model {config.model!r}; known: {', '.join(KNOWN_MODELS)}"
        )
    return _weights_file(config.pretrained)


def _weights_file(pretrained: str) -> tuple[Path | None, str]:
    """Return (the weights file or None for random weights, a stable id of those weights)."""
    if pretrained.lower() == RANDOM_WEIGHTS:
        return None, RANDOM_WEIGHTS
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ModelLoadError(
            f"weights file {pretrained!r} does not exist; torchvision models take a local "
            f"file or {RANDOM_WEIGHTS!r}"
        )
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return path, f"sha256-{digest[:16]}"


def _load_weights(model: torch.nn.Module, path: Path, config: EncoderConfig) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            # Training checkpoints often wrap the weights in one of these keys.
            if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
                state = state[key]
        model.load_state_dict(state)
    except Exception as error:
        raise ModelLoadError(
            f"could not load weights {config.pretrained!r} for {config.model}: "
            f"{type(error).__name__}: {str(error)[:300]}"
        ) from error


def _drop_classifier(model: torch.nn.Module) -> None:
    """Replace the model's last nn.Linear (its ImageNet head) by an identity."""
    name = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)][
        -1
    ]
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, torch.nn.Identity())
