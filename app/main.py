"""The FastAPI application: built by ``create_app``, wired up once in its lifespan."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from sqlalchemy import Engine
from threadpoolctl import threadpool_limits

from app import logs, version
from app.http.body_limit import BodyLimitMiddleware
from app.http.errors import install_error_handlers
from app.http.json_body import add_body_schemas
from app.http.metrics import MetricsMiddleware
from app.http.openapi import add_bearer_scheme
from app.http.routes import (
    admin,
    admin_usage,
    chat,
    concepts,
    health,
    history,
    negatives,
    openai_compat,
    playground,
    retrieve,
    users,
)
from app.http.routes.console import console_router, docs_router
from app.http.server import configure as configure_http_server
from app.memory import return_large_frees_to_os
from app.observability import Metrics
from app.security.auth_gate import AuthGate
from app.security.keys import KeyCache
from app.security.ratelimit import (
    AuthFailureLimiter,
    InFlightLimit,
    RateLimiter,
    open_rate_limiter,
)
from app.services import Services
from app.settings import Settings
from app.storage.blobs import BlobStore, open_blob_store
from app.storage.db.engine import make_engine, make_sessionmaker, shown_url
from app.storage.repository.concepts import ConceptSummary
from app.storage.thumbnails import ThumbnailCache
from retrieval.batching import BatchingEncoder
from retrieval.config import RANDOM_WEIGHTS
from retrieval.decision import BackgroundVectors, DecisionCache
from retrieval.decode_budget import DecodeBudget
from retrieval.encoders import open_encoder
from retrieval.errors import ModelLoadError
from retrieval.generators import Generator, open_generator
from retrieval.image_encoder import ImageEncoder
from retrieval.index import UserIndexCache, VersionedCache
from retrieval.regions import RegionProposer, open_region_proposer

logger = logging.getLogger(__name__)


def build_services(
    settings: Settings,
    encoder: ImageEncoder | None = None,
    generator: Generator | None = None,
) -> Services:
    """Open the database and blob store, load the encoder and the generator (the slow part)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return_large_frees_to_os()
    # The service's own matrix products are tiny (a few queries against one user's
    # vectors): BLAS threads would only spin, costing CPU that requests need.
    threadpool_limits(limits=1, user_api="blas")
    # The photo store first: a wrong bucket or key fails the start before the slow model load.
    blobs = open_blob_store(settings)
    opened: list[Callable[[], object]] = [blobs.close]
    try:
        engine = make_engine(settings.resolved_database_url)
        opened.append(engine.dispose)
        metrics = Metrics(settings.prometheus_multiproc_dir)
        opened.append(metrics.close)
        model = encoder or load_encoder(settings)
        # Everything that can fail to load before the encoder's worker starts.
        proposer = load_regions(settings)
        generated = generator or open_generator(settings.generator_config())
        opened.append(generated.close)
        limiter = open_rate_limiter(
            settings.redis_url,
            settings.rate_limit_rps,
            settings.rate_limit_burst,
            settings.redis_prefix,
        )
        opened.append(getattr(limiter, "close", lambda: None))
        services = _assemble(settings, blobs, engine, metrics, model, proposer, generated, limiter)
    except BaseException:
        for close in reversed(opened):  # what this start opened, not left behind
            with contextlib.suppress(Exception):
                close()
        raise
    logger.info(
        "rapport %s: encoder %s on %s, regions %s, generator %s; database %s; photos in %s",
        version(),
        model.model_id,
        model.device,
        settings.regions,
        _generator_named(settings),
        shown_url(settings.resolved_database_url),
        settings.blob_store or settings.resolved_blob_dir,
    )
    return services


def _assemble(
    settings: Settings,
    blobs: BlobStore,
    engine: Engine,
    metrics: Metrics,
    model: ImageEncoder,
    proposer: RegionProposer,
    generator: Generator,
    limiter: RateLimiter,
) -> Services:
    """The services around what ``build_services`` opened; starts the encoder's worker."""
    batching = BatchingEncoder(model, settings.batching_config(), on_batch=metrics.observe_batch)
    cache = UserIndexCache(max_bytes=settings.index_cache_bytes)
    metrics.track_queue(lambda: batching.queue_depth)
    metrics.track_cache(cache.stats)
    concepts: VersionedCache[dict[str, ConceptSummary]] = VersionedCache(
        settings.concept_cache_bytes,
        size=lambda summaries: sum(s.nbytes for s in summaries.values()) + 200,
    )
    metrics.track_cache(concepts.stats, "concept", "concept summaries")
    decisions = DecisionCache(
        settings.decision_cache_bytes,
        random_weights=model.model_id.endswith(f":{RANDOM_WEIGHTS}"),
    )
    metrics.track_cache(decisions.stats, "decision", "per-user decision rules")
    return Services(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        blobs=blobs,
        encoder=batching.start(),
        user_index_cache=cache,
        concept_summary_cache=concepts,
        generator=generator,
        metrics=metrics,
        region_proposer=proposer,
        default_min_score=settings.min_score,
        decisions=decisions,
        background=BackgroundVectors(batching.encode_all),
        rate_limiter=limiter,
        key_cache=KeyCache(settings.key_cache_s, settings.key_secret),
        auth_failures=AuthFailureLimiter(
            settings.auth_failures_per_minute, settings.auth_failures_burst
        ),
        thumbnails=ThumbnailCache(settings.thumbnail_cache_bytes),
        in_flight=InFlightLimit(settings.app_requests_in_flight(), settings.threadpool_size),
        decode_budget=decode_budget(settings),
    )


# How long a decode waits for room in the budget before its request gets 503: long enough
# for another photo's decode to end, short enough not to hold a pool thread for long.
DECODE_WAIT_S = 2.0


def decode_budget(settings: Settings) -> DecodeBudget:
    """The process's budget of pixels being decoded: one app may hold half of it (or one
    photo at the pixel cap), so that another app's photos still find room."""
    total = settings.decode_pixels_in_flight
    share = max(settings.max_image_pixels, total // 2)
    return DecodeBudget(total, owner_share=min(share, total), wait_s=DECODE_WAIT_S)


def served_app() -> FastAPI:
    """The app of one ``rapport serve --workers N`` worker (an import-string factory)."""
    logs.configure_worker()
    settings = Settings()
    return create_app(settings, freeze_heap=settings.gc_freeze)


def freeze_start_up_heap() -> None:
    """Keep everything alive now (models, libraries: ~500k objects) out of full collections.

    A full collection walks every tracked object with every thread of the process
    stopped: ~270 ms for a served ViT-B-32. Objects made later are collected as before.
    Never undone: in a served process the start-up heap lives as long as the process.
    """
    gc.collect()
    gc.freeze()
    logger.info("kept %d start-up objects out of garbage collection", gc.get_freeze_count())


def _generator_named(settings: Settings) -> str:
    if settings.generator == "none":
        return "none (chat answers with the prompt only)"
    if settings.generator == "echo":
        return "echo (not a model: answers repeat the prompt's concepts and question)"
    where = f" at {settings.generator_base_url}" if settings.generator == "openai" else ""
    return f"{settings.generator} {settings.generator_model}{where}"


def load_encoder(settings: Settings) -> ImageEncoder:
    """The configured encoder, or ModelLoadError with a message that says how to fix it."""
    try:
        return open_encoder(settings.encoder_config())
    except ModelLoadError as error:
        raise ModelLoadError(
            f"{error.detail.rstrip('.')}. Fix: download the weights on a machine with network "
            "access and set RAPPORT_CLIP_PRETRAINED to the local file (see docs/operations.md, "
            "'Real CLIP weights offline'), or choose another RAPPORT_CLIP_MODEL / "
            "RAPPORT_CLIP_PRETRAINED."
        ) from error


def load_regions(settings: Settings) -> RegionProposer:
    """The configured region proposer; a detector that cannot load stops the start."""
    try:
        return open_region_proposer(settings.region_config())
    except Exception as error:
        why = (
            error.detail
            if isinstance(error, ModelLoadError)
            else f"{type(error).__name__}: {error}"
        )
        raise ModelLoadError(
            f"could not load the region detector {settings.region_detector_model!r}: "
            f"{why.rstrip('.')}. Fix: set RAPPORT_REGION_DETECTOR_MODEL to a "
            "local OWLv2 / OWL-ViT folder, or RAPPORT_REGIONS=grid or whole."
        ) from error


def create_app(
    settings: Settings | None = None,
    services: Services | None = None,
    *,
    freeze_heap: bool = False,
) -> FastAPI:
    """The service. ``services`` lets a caller (the CLI, tests) build them beforehand.

    ``freeze_heap``: once started, keep every object that exists then out of the garbage
    collector's full passes, for the rest of the process (``rapport serve`` only).
    """
    settings = services.settings if services is not None else (settings or Settings())
    configure_http_server(settings)  # in every worker process: uvicorn builds its protocols

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = services or build_services(settings)
        app.state.services = built
        # Database, decoding and model work run in this pool, never on the event loop.
        to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
        if freeze_heap:
            freeze_start_up_heap()
        # The decision rule's background vectors, before the first request needs them: a
        # fixed min_score needs the rule too, for the user's corrections.
        await to_thread.run_sync(built.background.get)
        try:
            yield
        finally:
            if services is None:
                built.close()

    app = FastAPI(
        title="rapport",
        version=version(),
        summary="Retrieval-augmented personalization for multimodal LLMs",
        lifespan=lifespan,
        # Served by app/http/routes/console.py from packaged files (works offline).
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        timeout_s=settings.request_body_timeout_s,
    )
    app.add_middleware(AuthGate)  # outside BodyLimit: runs first, before any body is read
    app.add_middleware(MetricsMiddleware, metrics_of=lambda: app.state.services.metrics)
    install_error_handlers(app)
    routers = (
        health,
        concepts,
        negatives,
        retrieve,
        playground,
        chat,
        openai_compat,
        users,
        history,
        admin,
        admin_usage,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(docs_router)
    if settings.console:
        app.include_router(console_router)
    _document_bearer(app)
    return app


def _document_bearer(app: FastAPI) -> None:
    openapi = app.openapi

    def with_bearer() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_body_schemas(add_bearer_scheme(openapi()))
        return app.openapi_schema

    app.openapi = with_bearer  # type: ignore[method-assign]
