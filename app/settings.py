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

    data_dir: Path = Field(
        default=Path("./rapport-data"),
        description="where the SQLite file and the photos live by default",
    )
    database_url: str | None = Field(
        default=None,
        description="any SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host:5432/rapport`; "
        "unset: a SQLite file in the data folder",
    )
    blob_dir: Path | None = Field(
        default=None, description="the photo folder; unset: `$RAPPORT_DATA_DIR/blobs`"
    )
    blob_store: str | None = Field(
        default=None,
        description="`s3://bucket` or `s3://bucket/prefix`: photos in an S3-compatible bucket "
        "shared by every replica (docs/s3.md); unset: the photo folder",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="e.g. `http://seaweedfs:8333`; unset: `AWS_ENDPOINT_URL`, else AWS",
    )
    s3_region: str | None = Field(
        default=None, description="unset: `AWS_REGION` / `AWS_DEFAULT_REGION`"
    )
    s3_access_key_id: SecretStr | None = Field(
        default=None,
        description="both this and `RAPPORT_S3_SECRET_ACCESS_KEY`, or neither; unset: the "
        "standard AWS chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / "
        "`AWS_SESSION_TOKEN`, `AWS_PROFILE`, instance or pod roles)",
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="the secret of `RAPPORT_S3_ACCESS_KEY_ID`"
    )
    s3_path_style: bool = Field(
        default=False,
        description="`true`: always the bucket in the path, never in the host name (`false` "
        "lets botocore choose: the path with a custom endpoint, the host name on AWS)",
    )
    s3_max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=4, description="tries of one request on transient errors, with backoff"
    )
    s3_timeout_s: Annotated[float, Field(gt=0, le=120)] = Field(
        default=10.0, description="connect and read timeout of one try"
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="the server secret API keys are hashed with (HMAC-SHA256): at least 32 "
        "printable characters, the same on every host (docs/security.md); unset: a random "
        "one kept in `$RAPPORT_DATA_DIR/secret.key` (0600)",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="turns on `/v1/admin` (tenants and keys): at least 32 printable "
        "characters; unset: no admin API (404)",
    )

    encoder_family: EncoderFamily = Field(
        default="open_clip", description="`open_clip`, or `torchvision` for image-only backbones"
    )
    clip_model: str = Field(
        default="ViT-B-32",
        description="any `open_clip.list_models()` name, or `rapport-test-tiny`; with "
        "`torchvision`, one of its backbones (docs/quality.md)",
    )
    clip_pretrained: str = Field(
        default="laion2b_s34b_b79k",
        description="an open_clip tag, a local weights file, or `none` (random weights: tests "
        "only, logged as a warning); left unset with `torchvision`: the weights that the "
        "backbone's installed package ships (`efficientnet_lite0`: the `offline` extra)",
    )
    device: str = Field(
        default="auto",
        description="`auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`; fp16 on CUDA",
    )
    encode_batch_size: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=32, description="most photos per forward pass (micro-batching)"
    )
    encode_max_wait_ms: Annotated[float, Field(ge=0, le=1000)] = Field(
        default=5.0,
        description="longest wait for more photos, only while other requests are preparing theirs",
    )
    encode_queue_size: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="photos (regions, with grid or detector regions) waiting for the "
        "encoder; beyond it 429 with `Retry-After`. Unset: room for two of the largest "
        "requests, at least 256 (with the 2+3 grid a query photo is 14 regions, so 20 "
        "photos, `RAPPORT_MAX_IMAGES_PER_REQUEST`, give 280 and the queue 560). A value set "
        "below one largest request stops the start, naming both",
    )
    encode_queue_per_app: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="places in that queue one app may hold; beyond it that app gets 429 "
        "while others are still served. Unset: half the queue, at least one largest "
        "request; a value set below one largest request stops the start",
    )
    threadpool_size: Annotated[int, Field(ge=4, le=1024)] = Field(
        default=64,
        description="threads for database, decoding and model calls (never the event loop)",
    )
    torch_threads: Annotated[int, Field(ge=0, le=1024)] = Field(
        default=0,
        description="threads of one CPU forward pass; `0`: torch's default (one per core). "
        "`1` saves CPU with small models or many concurrent requests",
    )
    access_log: bool = Field(
        default=True,
        description="one log line per request; `false` when a proxy logs them already (saves "
        "~0.1 ms of CPU a request)",
    )
    # prometheus_client's own variable (it reads it at import): rapport serve --workers N
    # sets it to a private directory; an operator may set it to a directory of their own.
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where the workers of one run share their metrics, an existing folder, "
        "emptied at start; unset: a private folder per `rapport serve --workers N` run",
    )
    gc_freeze: bool = Field(
        default=True,
        description="`rapport serve` keeps what exists once it has started (models, "
        "libraries) out of Python's full garbage collections, which otherwise walk it all "
        "with every thread stopped (docs/benchmarks.md)",
    )

    default_top_k: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5, description="`top_k` when a request gives none"
    )
    min_score: Annotated[float | None, Field(ge=-1.0, le=1.0)] = Field(
        default=None,
        description="a fixed `min_score` when a request gives none; unset: rapport's "
        "label-free decision rule (docs/quality.md, 'How rapport decides a concept is "
        "present')",
    )
    decision_cache_bytes: Annotated[int, Field(ge=0)] = Field(
        default=16 * MiB, description="memory for per-user decision thresholds (LRU)"
    )
    regions: RegionKind = Field(default="whole", description="`whole`, `grid` or `detector`")
    region_grid_scales: tuple[int, ...] = Field(
        default=(2, 3), description="grid splits (JSON list)"
    )
    region_aggregation: Aggregation = Field(
        default="winner", description="how region hits combine per concept: `winner` or `best`"
    )
    region_detector_model: str = Field(
        default="google/owlv2-base-patch16-ensemble",
        description="the open-vocabulary detector (OWLv2 / OWL-ViT): a hub id or a local folder",
    )
    region_detector_threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.1, description="the detector's boxes scoring at least this are kept"
    )
    region_max: Annotated[int, Field(ge=1, le=64)] = Field(
        default=8, description="most detector boxes per photo, besides the whole photo"
    )
    region_detector_max_prompts: Annotated[int, Field(ge=1, le=256)] = Field(
        default=32,
        description="most words (1-256) the detector looks for in one photo: the generic "
        "words, then the categories with the most of the user's concepts, as many as fit",
    )
    region_encoding: RegionEncoding = Field(
        default="crop",
        description="`crop` (a pass per region) or `pooled` (one pass per photo, regions "
        "averaged from its feature map; torchvision conv nets and open_clip ViTs, others "
        "keep crops)",
    )
    region_pooled_side: Annotated[int, Field(ge=64, le=2048)] = Field(
        default=320, description="side of the square the photo is squeezed to for the pooled pass"
    )
    index_cache_bytes: Annotated[int, Field(ge=0)] = Field(
        default=512 * MiB, description="memory for cached per-user indexes (LRU)"
    )
    concept_cache_bytes: Annotated[int, Field(ge=0)] = Field(
        default=64 * MiB,
        description="memory for cached concept names and descriptions per user (LRU)",
    )

    generator: GeneratorKind = Field(
        default="none",
        description="`transformers`, `openai`, `echo` (not a model: an answer made of the "
        "prompt's concepts and question, for development) or `none` (README, 'Personalized "
        "answers')",
    )
    generator_model: str = Field(
        default="",
        description="HF id or checkpoint folder (transformers); served model name (openai)",
    )
    generator_base_url: str = Field(
        default="", description="OpenAI-compatible server, e.g. `http://127.0.0.1:8001/v1`"
    )
    generator_api_key: SecretStr | None = Field(
        default=None, description="sent to that server as a Bearer token"
    )
    generator_device: str = Field(
        default="auto", description="in-process model placement: `auto` (CUDA when available)"
    )
    generator_dtype: GeneratorDtype = Field(
        default="auto",
        description="in-process model precision: `auto` (bfloat16 on CUDA, float32 on CPU)",
    )
    generator_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="longest wait for the backend's answer or its next streamed bytes (504)",
    )
    generator_image_max_side: Annotated[int, Field(ge=64, le=8192)] = Field(
        default=1024, description="photos are downscaled to this before they go to the MLLM"
    )
    default_max_new_tokens: Annotated[int, Field(ge=1, le=32768)] = Field(
        default=256, description="answer length when a request gives none"
    )
    max_new_tokens_limit: Annotated[int, Field(ge=1, le=32768)] = Field(
        default=2048, description="the most `max_new_tokens` a request may ask for"
    )
    prompt_max_concepts: Annotated[int, Field(ge=0, le=20)] = Field(
        default=3, description="concepts in one prompt (named ones first, then by score)"
    )
    prompt_max_reference_images: Annotated[int, Field(ge=0, le=10)] = Field(
        default=1, description="reference photos of each concept in a prompt"
    )
    prompt_mode: PromptMode = Field(
        default="rap",
        description="`rap`, or `visual`: boxes drawn on the query photo (docs/quality.md)",
    )

    redis_url: str | None = Field(
        default=None,
        description="e.g. `redis://127.0.0.1:6379/0`: the rate limit is shared by every "
        "process; if Redis fails, requests are let through (logged). Unset: each process "
        "limits alone (a warning says so)",
    )
    redis_prefix: str = Field(default="rapport:", description="prefix of rapport's Redis keys")
    key_cache_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=1.0,
        description="seconds an accepted API key is trusted without asking the database; a "
        "key revoked in another process stops working within this time (`0`: ask every time)",
    )
    rate_limit_rps: Annotated[float, Field(ge=0)] = Field(
        default=100.0,
        description="requests per second of one app (token bucket); beyond it 429 with "
        "`Retry-After`; `0`: no limit",
    )
    rate_limit_burst: Annotated[int, Field(ge=1)] = Field(
        default=200, description="the token bucket's size: requests one app may make at once"
    )
    max_requests_in_flight_per_app: Annotated[int | None, Field(ge=0)] = Field(
        default=None,
        description="requests of one app in progress at once in each process (a slow "
        "generator, a full encoder queue), beyond which 429 with `Retry-After: 1`, so one "
        "app cannot hold every thread; unset: half of `RAPPORT_THREADPOOL_SIZE`; `0`: no limit",
    )
    auth_failures_per_minute: Annotated[float, Field(ge=0)] = Field(
        default=30.0,
        description="failed authentications one client address may make per minute, in "
        "each process, after a burst of `RAPPORT_AUTH_FAILURES_BURST`; then 429; `0`: no limit",
    )
    auth_failures_burst: Annotated[int, Field(ge=1)] = Field(
        default=20, description="failed authentications of one address before that limit"
    )
    forwarded_allow_ips: str = Field(
        default="",
        description="comma-separated addresses or networks of the proxies (the load "
        "balancer) whose X-Forwarded-For names the client; empty: no proxy is trusted, the "
        "connection's own address is the client's",
    )
    max_concepts_per_user: Annotated[int, Field(ge=1)] = Field(
        default=1000, description="concepts of one user; beyond it 409"
    )
    max_photos_per_concept: Annotated[int, Field(ge=1)] = Field(
        default=50, description="photos of one concept; beyond it 409"
    )
    max_tenant_bytes: Annotated[int, Field(ge=0)] = Field(
        default=10 * 1024 * MiB,
        description="bytes one app stores (10 GiB); beyond it 413; `0`: no limit. Counts each "
        "photo as at least a 4 KiB file block, plus 512 bytes of rows and each vector (4 bytes "
        "a dimension + 256)",
    )

    max_request_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=50 * MiB,
        description="body cap, checked from Content-Length and while streaming (413)",
    )
    header_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=10.0,
        description="seconds a client has to send a request's headers; then the connection "
        "is closed",
    )
    max_connections: Annotated[int, Field(ge=1)] = Field(
        default=1000,
        description="open connections and requests one process serves; more get 503. One "
        "client address may hold an eighth of them (at least 4; the trusted proxies are not "
        "counted); its further connections are closed at once",
    )
    keep_alive_s: Annotated[int, Field(ge=1, le=600)] = Field(
        default=5, description="seconds an idle keep-alive connection stays open"
    )
    request_body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="seconds a request's body may take to arrive, counted from the request's "
        "start; then 408",
    )
    max_image_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=10 * MiB, description="per-photo cap (413)"
    )
    max_image_pixels: Annotated[int, Field(ge=1)] = Field(
        default=40_000_000, description="decompression-bomb cap, checked from the header (413)"
    )
    max_images_per_request: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=20,
        description="photos in one registration or chat request (422), counted before any is "
        "fetched or decoded",
    )
    max_request_pixels: Annotated[int, Field(ge=1)] = Field(
        default=120_000_000,
        description="decoded pixels of all photos of one request (chat, registration) "
        "together, counted from their headers before any is decoded (413)",
    )
    decode_pixels_in_flight: Annotated[int, Field(ge=1)] = Field(
        default=100_000_000,
        description="pixels being decoded at once in each process, over all requests (about "
        "3 to 5 bytes of memory each); one app may hold half, or one photo at the cap; a decode "
        "that finds no room within 2 s answers 503",
    )
    max_message_chars: Annotated[int, Field(ge=1)] = Field(
        default=16_000, description="characters of text in one chat message (422)"
    )
    max_request_text_chars: Annotated[int, Field(ge=1)] = Field(
        default=64_000,
        description="characters of text in all messages of one chat request (413)",
    )

    # Hostile input and faults
    remote_photos: bool = Field(
        default=True,
        description="fetch chat photos given by http(s) URL; `false`: every URL answers 400, "
        "asking for data URLs",
    )
    remote_photo_max_bytes: Annotated[int, Field(ge=1024)] | None = Field(
        default=None,
        description="cap on a fetched body; unset: `RAPPORT_MAX_IMAGE_BYTES`",
    )
    remote_photo_timeout_s: Annotated[float, Field(gt=0, le=120)] = Field(
        default=5.0, description="total time of one fetch, redirects and DNS included"
    )
    remote_photo_allow_private: bool = Field(
        default=False, description="also fetch from non-public addresses (tests, intranets)"
    )
    doctor_grace_s: Annotated[float, Field(ge=0)] = Field(
        default=3600.0,
        description="`rapport doctor --repair` leaves unreferenced files younger than this "
        "(they may belong to writes in flight)",
    )

    # The browser console and the API docs
    console: bool = Field(default=True, description="serve the browser console at `/console`")
    thumbnail_cache_bytes: Annotated[int, Field(ge=0)] = Field(
        default=32 * MiB,
        description="memory for thumbnails (`?size=`), per process, least recently used dropped",
    )
    looks_like_min_score: Annotated[float | None, Field(ge=-1.0, le=1.0)] = Field(
        default=None,
        description="a concept is flagged when a photo of it scores at least this against a "
        "photo of another concept of the same user; unset: the default `min_score`, and with "
        "neither set, when the decision rule would call that other concept present in its photo",
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
            pretrained=self._pretrained(),
            device=self.device,
            batch_size=self.encode_batch_size,
        )

    def _pretrained(self) -> str:
        # The default tag is open_clip's; a torchvision model left without one takes the
        # weights its package ships ("" tells the encoder so).
        if self.encoder_family != "open_clip" and "clip_pretrained" not in self.model_fields_set:
            return ""
        return self.clip_pretrained

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
