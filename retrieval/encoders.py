"""Build the photo encoder an ``EncoderConfig`` names, or tell its vectors' id.

The one place that knows every encoder family, so the families need not know
each other.
"""

from __future__ import annotations

from typing import get_args

from retrieval.config import EncoderConfig, EncoderFamily
from retrieval.errors import ModelLoadError
from retrieval.image_encoder import ImageEncoder


def open_encoder(config: EncoderConfig) -> ImageEncoder:
    """Build the encoder ``config.family`` names, or raise ModelLoadError saying why."""
    # Imported here: each family loads its own libraries, and only one is used.
    if config.family == "open_clip":
        from retrieval.encoder import Encoder

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
    from retrieval.encoder import model_id_of as open_clip_model_id

    return open_clip_model_id(config)
