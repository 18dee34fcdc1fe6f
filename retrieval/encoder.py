"""CLIP encoders (open_clip): photos and text to L2-normalised vectors."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch
from PIL import Image

from retrieval.config import RANDOM_WEIGHTS, EncoderConfig, EncoderFamily
from retrieval.devices import resolve_device
from retrieval.errors import ModelLoadError
from retrieval.hub import open_clip_weights
from retrieval.preprocessing import Preprocessing

if TYPE_CHECKING:
    from retrieval.torchvision_encoder import TorchvisionEncoder

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TEST_MODEL = "rapport-test-tiny"


def open_encoder(config: EncoderConfig) -> Encoder | TorchvisionEncoder:
    """Build the encoder ``config.family`` names, or raise ModelLoadError saying why."""
    if config.family == "open_clip":
        return Encoder.from_config(config)
    if config.family == "torchvision":
        from retrieval.torchvision_encoder import TorchvisionEncoder

        return TorchvisionEncoder.from_config(config)
    raise ModelLoadError(
        f"unknown encoder family {config.family!r}; known: {', '.join(get_args(EncoderFamily))}"
    )


def model_id_of(config: EncoderConfig) -> str:
    """The id an encoder built from ``config`` gives its vectors, without building it
    (a local weights file is hashed); ModelLoadError as ``open_encoder`` would raise it."""
    if config.family == "torchvision":
        from retrieval.torchvision_encoder import torchvision_model_id

        return torchvision_model_id(config)
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    if config.model not in open_clip.list_models():
        raise ModelLoadError(f"unknown model {config.model!r}")
    return f"{config.model}:{_weights_source(open_clip, config)[1]}"


class Encoder:
    """Encodes photos and text into one space; every vector has unit L2 norm.

    Build it with ``Encoder.from_config``. Safe to call from several threads:
    forward passes are serialised, since concurrent passes on one device only
    compete for the same cores.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        preprocessing: Preprocessing,
        tokenizer: object,
        model_id: str,
        dim: int,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int,
    ) -> None:
        self._model = model
        self._preprocessing = preprocessing
        self._tokenizer = tokenizer
        self.model_id = model_id
        self.dim = dim
        self.device = device
        self._dtype = dtype
        self._batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def supports_text(self) -> bool:
        return True

    @property
    def input_size(self) -> int:
        """The side of the square the model sees; photos need no more pixels than this."""
        return min(_image_size(self._model))

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
            with torch.random.fork_rng(devices=[]):
                # Random weights are seeded so that every process builds the same
                # model and vectors stay comparable across workers and restarts.
                torch.manual_seed(0)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    config.model,
                    pretrained=pretrained,
                    precision=precision,
                    device=device,
                    **keywords,
                )
        except Exception as error:
            raise ModelLoadError(
                f"could not load weights {config.pretrained!r} for {config.model}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if pretrained is None:
            logger.warning(
                "encoder %s runs on RANDOM weights: retrieval results are meaningless "
                "(fine for tests, never for users)",
                config.model,
            )
        model.eval()
        with torch.inference_mode():
            probe = torch.zeros((1, 3, *_image_size(model)), device=device)
            dim = int(model.encode_image(probe.to(_dtype(precision))).shape[-1])
        return cls(
            model=model,
            preprocessing=Preprocessing.from_transforms(preprocess),
            tokenizer=open_clip.get_tokenizer(config.model),
            model_id=f"{config.model}:{weights_id}",
            dim=dim,
            device=device,
            dtype=_dtype(precision),
            batch_size=config.batch_size,
        )

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB photo resized and cropped for the model (``uint8`` pixels); the
        arithmetic that finishes it runs per batch in ``encode_tensors``."""
        return self._preprocessing.pixels(image)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors (float32, shape (n, dim), unit norm) for RGB photos, in order."""
        return self.encode_tensors([self.preprocess(image) for image in images])

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Vectors for already preprocessed photos (see ``preprocess``)."""
        return forward_in_batches(
            tensors,
            forward=self._model.encode_image,  # type: ignore[arg-type]
            collate=lambda chunk: self._preprocessing.batch(chunk, self.device, self._dtype),
            dim=self.dim,
            batch_size=self._batch_size,
            lock=self._lock,
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors (float32, shape (n, dim), unit norm) for texts, in order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self._tokenizer(list(texts))  # type: ignore[operator]
        with self._lock, torch.inference_mode():
            features = self._model.encode_text(tokens.to(self.device))  # type: ignore[operator]
            return _normalise(features)


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
            chunks.append(_normalise(forward(collate(chunk))))
    return np.concatenate(chunks)


def _normalise(features: torch.Tensor) -> np.ndarray:
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


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
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return str(path), f"sha256-{digest[:16]}"
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or "/" in config.pretrained:
        raise ModelLoadError(f"weights file {config.pretrained!r} does not exist")
    tags = open_clip.list_pretrained_tags_by_model(config.model)  # type: ignore[attr-defined]
    if config.pretrained not in tags:
        choices = ", ".join(tags) or "none (use a local weights file)"
        raise ModelLoadError(
            f"unknown pretrained tag {config.pretrained!r} for {config.model}; known: {choices}"
        )
    return config.pretrained, config.pretrained
