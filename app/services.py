"""The heavy, long-lived parts of the service, built once at start-up."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.observability import Metrics
from app.security.keys import KeyCache
from app.security.ratelimit import AuthFailureLimiter, InFlightLimit, RateLimiter
from app.settings import Settings
from app.storage.blobs import BlobStore
from app.storage.repository.concepts import ConceptSummary
from app.storage.thumbnails import ThumbnailCache
from retrieval.batching import BatchingEncoder
from retrieval.decision import BackgroundVectors, DecisionCache
from retrieval.decode_budget import DecodeBudget
from retrieval.generators import Generator
from retrieval.index import UserIndexCache, VersionedCache
from retrieval.regions import RegionProposer


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    encoder: BatchingEncoder
    user_index_cache: UserIndexCache
    # user id -> their concepts' summaries, at the user's version
    concept_summary_cache: VersionedCache[dict[str, ConceptSummary]]
    generator: Generator
    metrics: Metrics
    region_proposer: RegionProposer
    # When a request names none: a fixed threshold, or None for the decision rule.
    default_min_score: float | None
    rate_limiter: RateLimiter
    key_cache: KeyCache
    auth_failures: AuthFailureLimiter
    decisions: DecisionCache  # per-user decision rules (retrieval/decision.py)
    background: BackgroundVectors  # generic photos' vectors, for the rule
    thumbnails: ThumbnailCache = field(default_factory=lambda: ThumbnailCache(32 * 1024 * 1024))
    in_flight: InFlightLimit = field(default_factory=lambda: InFlightLimit(0))
    decode_budget: DecodeBudget = field(
        default_factory=lambda: DecodeBudget(10**9, owner_share=10**9, wait_s=0)
    )

    def close(self) -> None:
        """Stop the encoder's worker; release the generator, the database, the photo store
        and the metrics."""
        self.encoder.stop()
        self.generator.close()
        self.engine.dispose()
        self.blobs.close()
        close = getattr(self.rate_limiter, "close", None)
        if close is not None:
            close()
        self.metrics.close()

    def index_key(self, user_id: int) -> Hashable:
        return (user_id, self.encoder.model_id)
