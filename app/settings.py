"""The one place that reads the environment (``RAPPORT_*`` variables)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.images import ImageLimits

if TYPE_CHECKING:
    from retrieval.encoder import EncoderConfig

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Service configuration. Invalid values fail at start-up, not at the first request."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_", frozen=True, extra="ignore")

    data_dir: Path = Path("./rapport-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in data_dir"
    )
    blob_dir: Path | None = Field(default=None, description="photo folder; default data_dir/blobs")

    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    device: str = "auto"
    encode_batch_size: Annotated[int, Field(ge=1, le=1024)] = 32

    default_top_k: Annotated[int, Field(ge=1, le=100)] = 5
    min_score: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.75
    index_cache_bytes: Annotated[int, Field(ge=0)] = 512 * MiB

    max_request_bytes: Annotated[int, Field(ge=1024)] = 50 * MiB
    max_image_bytes: Annotated[int, Field(ge=1024)] = 10 * MiB
    max_image_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    max_images_per_request: Annotated[int, Field(ge=1, le=1000)] = 20

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value != "auto" and value != "cpu" and not value.startswith("cuda"):
            raise ValueError("device must be auto, cpu or cuda[:N]")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'rapport.db').resolve()}"

    @cached_property
    def resolved_blob_dir(self) -> Path:
        return (self.blob_dir or self.data_dir / "blobs").resolve()

    def encoder_config(self) -> EncoderConfig:
        # Imported here: the encoder module loads torch, which key management never needs.
        from retrieval.encoder import EncoderConfig

        return EncoderConfig(
            model=self.clip_model,
            pretrained=self.clip_pretrained,
            device=self.device,
            batch_size=self.encode_batch_size,
        )

    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)
