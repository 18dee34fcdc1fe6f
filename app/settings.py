"""The one place that reads the environment (``RAPPORT_*`` variables)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.settings_rules import (
    check_blob_store,
    check_secret,
    check_together,
    shared_secret,
)
from retrieval.config import (
    Aggregation,
    BatchingConfig,
    EncoderConfig,
    EncoderFamily,
    GeneratorConfig,
    GeneratorDtype,
    GeneratorKind,
    ImageLimits,
    PromptConfig,
    PromptMode,
    RegionConfig,
    RegionEncoding,
    RegionKind,
    check_device,
)

MiB = 1024 * 1024
# The encoder queue's length when RAPPORT_ENCODE_QUEUE_SIZE is unset and one request needs fewer.
DEFAULT_ENCODE_QUEUE = 256


class Settings(BaseSettings):
    """Service configuration. Invalid values fail at start-up, not at the first request."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_", frozen=True, extra="ignore")

    data_dir: Path = Path("./rapport-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in data_dir"
    )
    blob_dir: Path | None = Field(default=None, description="photo folder; default data_dir/blobs")
    blob_store: str | None = Field(
        default=None,
        description="s3://bucket[/prefix]: photos in an S3-compatible bucket shared by every "
        "replica; unset: the local folder (blob_dir)",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="e.g. http://seaweedfs:8333; unset: AWS_ENDPOINT_URL, or AWS"
    )
    s3_region: str | None = Field(default=None, description="unset: AWS_REGION, AWS's default")
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="unset: the standard AWS chain (AWS_ACCESS_KEY_ID, profiles...)"
    )
    s3_secret_access_key: SecretStr | None = None
    s3_path_style: bool = Field(
        default=False, description="bucket in the path, not the host name (most self-hosted stores)"
    )
    s3_max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=4, description="tries of one S3 request on transient errors, with backoff"
    )
    s3_timeout_s: Annotated[float, Field(gt=0, le=120)] = Field(
        default=10.0, description="connect and read timeout of one S3 request"
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="keys API keys' hashes; default: a random secret kept in data_dir/secret.key",
    )
    admin_key: SecretStr | None = Field(
        default=None, description="enables /v1/admin for tenant and key management"
    )

    encoder_family: EncoderFamily = "open_clip"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    device: str = "auto"
    encode_batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    encode_max_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0
    encode_queue_size: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="photos (regions, with grid or detector regions) waiting for the "
        "encoder, beyond which requests get 429; unset: room for two of the largest "
        "requests, at least 256",
    )
    encode_queue_per_app: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="places in that queue one app may hold, beyond which its requests get "
        "429 while other apps' photos are still taken; unset: half the queue, and at "
        "least one largest request",
    )
    threadpool_size: Annotated[int, Field(ge=4, le=1024)] = 64
    torch_threads: Annotated[int, Field(ge=0, le=1024)] = Field(
        default=0,
        description="threads for one CPU forward pass (torch intra-op); 0: torch's default, "
        "one per core. 1 saves CPU with small models or many concurrent requests",
    )
    access_log: bool = Field(default=True, description="one log line per request (uvicorn)")
    # prometheus_client's own variable (it reads it at import): rapport serve --workers N
    # sets it to a private directory; an operator may set it to a directory of their own.
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where workers share their metrics; set by rapport serve --workers N",
    )
    gc_freeze: bool = Field(
        default=True,
        description="rapport serve keeps what exists once it has started (models, libraries) "
        "out of Python's full garbage collections, which otherwise walk it all with every "
        "thread stopped",
    )

    default_top_k: Annotated[int, Field(ge=1, le=100)] = 5
    min_score: Annotated[float | None, Field(ge=-1.0, le=1.0)] = Field(
        default=None,
        description="a fixed score threshold for every request that names none; unset: "
        "rapport's label-free decision rule (README, 'How rapport decides a concept is present')",
    )
    decision_cache_bytes: Annotated[int, Field(ge=0)] = 16 * MiB
    regions: RegionKind = "whole"
    region_grid_scales: tuple[int, ...] = (2, 3)
    region_aggregation: Aggregation = "winner"
    region_detector_model: str = "google/owlv2-base-patch16-ensemble"
    region_detector_threshold: Annotated[float, Field(ge=0, le=1)] = 0.1
    region_max: Annotated[int, Field(ge=1, le=64)] = 8
    region_detector_max_prompts: Annotated[int, Field(ge=1, le=256)] = Field(
        default=32,
        description="words the detector looks for in each photo: the generic ones, then the "
        "categories of the user's concepts that have the most concepts, as many as fit",
    )
    region_encoding: RegionEncoding = Field(
        default="crop",
        description="crop: one forward pass per region; pooled: one pass per photo, regions "
        "averaged from its feature map (torchvision conv nets; others fall back to crops)",
    )
    region_pooled_side: Annotated[int, Field(ge=64, le=2048)] = 320
    index_cache_bytes: Annotated[int, Field(ge=0)] = 512 * MiB
    concept_cache_bytes: Annotated[int, Field(ge=0)] = 64 * MiB

    generator: GeneratorKind = "none"
    generator_model: str = ""
    generator_base_url: str = ""
    generator_api_key: SecretStr | None = None
    generator_device: str = "auto"
    generator_dtype: GeneratorDtype = "auto"
    generator_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    generator_image_max_side: Annotated[int, Field(ge=64, le=8192)] = 1024
    default_max_new_tokens: Annotated[int, Field(ge=1, le=32768)] = 256
    max_new_tokens_limit: Annotated[int, Field(ge=1, le=32768)] = 2048
    prompt_max_concepts: Annotated[int, Field(ge=0, le=20)] = 3
    prompt_max_reference_images: Annotated[int, Field(ge=0, le=10)] = 1
    prompt_mode: PromptMode = "rap"

    redis_url: str | None = Field(
        default=None,
        description="shares rate limits across processes, e.g. redis://127.0.0.1:6379/0",
    )
    redis_prefix: str = "rapport:"
    key_cache_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=1.0,
        description="seconds an accepted API key is trusted without asking the database; "
        "a key revoked in another process stops working within this time (0: always ask)",
    )
    rate_limit_rps: Annotated[float, Field(ge=0)] = 100.0
    rate_limit_burst: Annotated[int, Field(ge=1)] = 200
    max_requests_in_flight_per_app: Annotated[int | None, Field(ge=0)] = Field(
        default=None,
        description="requests of one app in progress at once in each process, beyond which "
        "429; unset: half of RAPPORT_THREADPOOL_SIZE; 0: no limit",
    )
    auth_failures_per_minute: Annotated[float, Field(ge=0)] = Field(
        default=30.0,
        description="failed authentications one client address may make per minute, in "
        "each process, after a burst of auth_failures_burst; 0: no limit",
    )
    auth_failures_burst: Annotated[int, Field(ge=1)] = 20
    forwarded_allow_ips: str = Field(
        default="",
        description="comma-separated addresses or networks of the proxies (the load "
        "balancer) whose X-Forwarded-For names the client; empty: no proxy is trusted, the "
        "connection's own address is the client's",
    )
    max_concepts_per_user: Annotated[int, Field(ge=1)] = 1000
    max_photos_per_concept: Annotated[int, Field(ge=1)] = 50
    max_tenant_bytes: Annotated[int, Field(ge=0)] = 10 * 1024 * MiB

    max_request_bytes: Annotated[int, Field(ge=1024)] = 50 * MiB
    header_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=10.0, description="seconds a client has to send a request's headers"
    )
    max_connections: Annotated[int, Field(ge=1)] = Field(
        default=1000,
        description="open connections and requests one process serves; more get 503",
    )
    keep_alive_s: Annotated[int, Field(ge=1, le=600)] = Field(
        default=5, description="seconds an idle keep-alive connection stays open"
    )
    request_body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_image_bytes: Annotated[int, Field(ge=1024)] = 10 * MiB
    max_image_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    max_images_per_request: Annotated[int, Field(ge=1, le=1000)] = 20
    max_request_pixels: Annotated[int, Field(ge=1)] = Field(
        default=120_000_000,
        description="decoded pixels of all photos of one request (chat, registration) "
        "together, counted from their headers before any is decoded",
    )
    decode_pixels_in_flight: Annotated[int, Field(ge=1)] = Field(
        default=100_000_000,
        description="pixels being decoded at once in each process, over all requests (about "
        "3 to 5 bytes of memory each); one app may hold half, or one photo at the cap; a decode "
        "that finds no room within 2 s answers 503",
    )
    max_message_chars: Annotated[int, Field(ge=1)] = Field(
        default=16_000, description="characters of text in one chat message"
    )
    max_request_text_chars: Annotated[int, Field(ge=1)] = Field(
        default=64_000, description="characters of text in all messages of one chat request"
    )

    # Hostile input and faults
    remote_photos: bool = Field(default=True, description="fetch chat photos given by http(s) URL")
    remote_photo_max_bytes: Annotated[int, Field(ge=1024)] | None = Field(
        default=None, description="cap on a fetched photo's bytes; default max_image_bytes"
    )
    remote_photo_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    remote_photo_allow_private: bool = Field(
        default=False, description="also fetch from loopback/private addresses (tests, intranets)"
    )
    doctor_grace_s: Annotated[float, Field(ge=0)] = Field(
        default=3600.0, description="rapport doctor leaves unreferenced files younger than this"
    )

    # The browser console and the API docs
    console: bool = Field(default=True, description="serve the browser console at /console")
    thumbnail_cache_bytes: Annotated[int, Field(ge=0)] = Field(
        default=32 * MiB, description="memory for photo thumbnails (?size=), per process"
    )
    looks_like_min_score: Annotated[float | None, Field(ge=-1.0, le=1.0)] = Field(
        default=None,
        description="a concept whose photos score at least this against another concept's "
        "is flagged as looking like it; default: the default min_score, and with none, the "
        "decision rule's threshold of the other concept",
    )

    @field_validator("device", "generator_device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return check_device(value)

    @field_validator("blob_store")
    @classmethod
    def _check_blob_store(cls, value: str | None) -> str | None:
        return check_blob_store(value)

    @field_validator("admin_key", "secret_key")
    @classmethod
    def _check_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            check_secret(f"RAPPORT_{(info.field_name or '').upper()}", value.get_secret_value())
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        check_together(self)
        return self

    @field_validator("prometheus_multiproc_dir")
    @classmethod
    def _check_multiproc_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError("PROMETHEUS_MULTIPROC_DIR must name an existing directory")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'rapport.db').resolve()}"

    @cached_property
    def key_secret(self) -> bytes:
        """RAPPORT_SECRET_KEY, or a random secret created once in the data folder.

        Every process that checks keys must share it: set RAPPORT_SECRET_KEY when
        processes run on several hosts with different data folders.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return shared_secret(self.data_dir)

    @cached_property
    def resolved_blob_dir(self) -> Path:
        return (self.blob_dir or self.data_dir / "blobs").resolve()

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            family=self.encoder_family,
            model=self.clip_model,
            pretrained=self.clip_pretrained,
            device=self.device,
            batch_size=self.encode_batch_size,
        )

    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            kind=self.generator,
            model=self.generator_model,
            base_url=self.generator_base_url,
            api_key=self.generator_api_key.get_secret_value() if self.generator_api_key else None,
            device=self.generator_device,
            dtype=self.generator_dtype,
            timeout_s=self.generator_timeout_s,
            image_max_side=self.generator_image_max_side,
        )

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(
            max_concepts=self.prompt_max_concepts,
            max_reference_images=self.prompt_max_reference_images,
            mode=self.prompt_mode,
        )

    def largest_request_regions(self) -> int:
        """Regions one request with the most photos allowed puts in the encoder's queue."""
        return self.max_images_per_request * self.region_config().most_per_photo()

    def encode_queue_slots(self) -> int:
        """``encode_queue_size``, or when unset room for the regions of two largest
        requests (at least 256), so that every request the limits allow can be encoded
        and one app's cannot fill the queue alone."""
        if self.encode_queue_size is not None:
            return self.encode_queue_size
        return max(DEFAULT_ENCODE_QUEUE, 2 * self.largest_request_regions())

    def app_requests_in_flight(self) -> int:
        """``max_requests_in_flight_per_app``, or when unset half the thread pool."""
        if self.max_requests_in_flight_per_app is not None:
            return self.max_requests_in_flight_per_app
        return self.threadpool_size // 2

    def encode_chunk_limit(self) -> int:
        """The most photos one call may queue at once: within the queue and one app's share."""
        return min(self.encode_queue_slots(), self.encode_queue_app_slots())

    def encode_queue_app_slots(self) -> int:
        """``encode_queue_per_app``, or when unset half the queue (at least one largest
        request)."""
        if self.encode_queue_per_app is not None:
            return self.encode_queue_per_app
        return max(self.largest_request_regions(), self.encode_queue_slots() // 2)

    def batching_config(self) -> BatchingConfig:
        return BatchingConfig(
            max_batch=self.encode_batch_size,
            max_wait_ms=self.encode_max_wait_ms,
            queue_size=self.encode_queue_slots(),
            max_per_owner=self.encode_queue_app_slots(),
            torch_threads=self.torch_threads,
        )

    def region_config(self) -> RegionConfig:
        return RegionConfig(
            kind=self.regions,
            grid_scales=self.region_grid_scales,
            detector_model=self.region_detector_model,
            detector_threshold=self.region_detector_threshold,
            max_regions=self.region_max,
            detector_max_prompts=self.region_detector_max_prompts,
            device=self.device,
            encoding=self.region_encoding,
            pooled_side=self.region_pooled_side,
        )
