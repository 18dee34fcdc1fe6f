"""What every photo encoder promises (``ImageEncoder``), and the part they share.

``BatchedImageEncoder`` is the common body of the open_clip encoder
(retrieval/encoder.py) and the torchvision ones (retrieval/torchvision_encoder.py,
EfficientNet-Lite0 included): preprocessing in the caller's thread, forward passes
in batches under one lock, unit-norm float32 vectors, seeded random weights and
weights files identified by their hash. Build encoders with
``retrieval.encoders.open_encoder``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch
from PIL import Image

from retrieval.preprocessing import Preprocessing
from retrieval.regions import Box

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ImageEncoder(Protocol):
    """Photos to unit-norm float32 vectors of one model (``model_id``), ``dim`` wide."""

    @property
    def model_id(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def input_size(self) -> int:
        """The shorter side a photo needs; more pixels are only resized away."""
        ...

    @property
    def pools_regions(self) -> bool:
        """Whether ``encode_regions`` pools one pass's feature map (else it encodes crops)."""
        ...

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB photo resized for the model, as ``uint8`` pixels."""
        ...

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Vectors of already preprocessed photos (see ``preprocess``), in order."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors (shape (n, dim)) of RGB photos, in order."""
        ...

    def encode_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> np.ndarray:
        """The vector of the whole photo, then of each box (x0, y0, x1, y1 in its pixels)."""
        ...

    def prepare_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> Callable[[], np.ndarray]:
        """``encode_regions`` in two halves: the photo is prepared now (resized, in the
        caller's thread); the forward pass runs when the returned function is called."""
        ...

    def encode_regions_of(
        self, photos: Sequence[tuple[Image.Image, Sequence[Box]]], side: int = 320
    ) -> list[np.ndarray]:
        """``encode_regions`` of each (photo, boxes), in order."""
        ...


class BatchedImageEncoder:
    """An ``ImageEncoder`` around a model whose forward pass (``_forward``) maps a batch
    of preprocessed photos to features. Safe to call from several threads: forward
    passes are serialised, since concurrent passes on one device only compete for
    the same cores."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        preprocessing: Preprocessing,
        model_id: str,
        dim: int,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int,
        input_size: int,
    ) -> None:
        self._model = model
        self._preprocessing = preprocessing
        self.model_id = model_id
        self.dim = dim
        self.device = device
        self._dtype = dtype
        self._batch_size = batch_size
        self.input_size = input_size
        self._lock = threading.Lock()

    @property
    def pools_regions(self) -> bool:
        return False

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB photo resized (and cropped) for the model (``uint8`` pixels); the
        arithmetic that finishes it runs per batch in ``encode_tensors``."""
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

    def encode_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> np.ndarray:
        """The whole photo's vector, then each box's (see ``prepare_regions``)."""
        return self.prepare_regions(image, boxes, side)()

    def prepare_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> Callable[[], np.ndarray]:
        """The whole photo and each box's crop preprocessed now; their vectors when the
        returned function is called (``side`` is for encoders that pool a feature map)."""
        tensors = [self.preprocess(part) for part in (image, *(image.crop(box) for box in boxes))]
        return lambda: self.encode_tensors(tensors)

    def encode_regions_of(
        self, photos: Sequence[tuple[Image.Image, Sequence[Box]]], side: int = 320
    ) -> list[np.ndarray]:
        return [self.encode_regions(image, boxes, side) for image, boxes in photos]

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self._model(batch)
        return features


def forward_in_batches(
    tensors: Sequence[torch.Tensor],
    *,
    forward: Callable[[torch.Tensor], torch.Tensor],
    collate: Callable[[Sequence[torch.Tensor]], torch.Tensor],
    dim: int,
    batch_size: int,
    lock: threading.Lock,
) -> np.ndarray:
    """Unit-norm float32 vectors of ``forward`` over ``tensors``, ``batch_size`` at a time;
    ``collate`` turns a chunk of preprocessed photos into the model's input batch.

    One forward pass runs at a time (``lock``): concurrent passes on one device
    only compete for the same cores.
    """
    if not tensors:
        return np.zeros((0, dim), dtype=np.float32)
    chunks = []
    for start in range(0, len(tensors), batch_size):
        chunk = tensors[start : start + batch_size]
        with lock, torch.inference_mode():
            chunks.append(normalised(forward(collate(chunk))))
    return np.concatenate(chunks)


def normalised(features: torch.Tensor) -> np.ndarray:
    """Features as unit-norm float32 rows on the CPU."""
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


def seeded(build: Callable[[], T]) -> T:
    """``build()`` with torch's RNG seeded and restored after: random weights are then the
    same in every process, so vectors stay comparable across workers and restarts."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def warn_random_weights(model: str) -> None:
    logger.warning(
        "encoder %s runs on RANDOM weights: retrieval results are meaningless "
        "(fine for tests, never for users)",
        model,
    )


def weights_file_id(path: Path) -> str:
    """A stable id of a weights file's content, for the vectors it gives."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return f"sha256-{digest[:16]}"
