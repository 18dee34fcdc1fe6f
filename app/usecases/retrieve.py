"""Which of a user's concepts a photo shows or a question names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from app.domain.scope import UserScope
from app.services import Services
from app.storage.repository import concepts as concept_rows
from app.storage.repository import users as user_rows
from app.storage.repository import vectors as vector_rows
from app.storage.repository.concepts import ConceptSummary
from app.timing import Timings
from app.usecases.photo_policy import PhotoPolicy
from retrieval.errors import InvalidRequest
from retrieval.index import UserIndex
from retrieval.names import name_key, named_in
from retrieval.regions import Box
from retrieval.search import PhotoSearch, RegionMatch, SearchOptions, search_photos

# A concept named in a question with no photo to compare against.
NAMED_ONLY_SCORE = 1.0


@dataclass(frozen=True)
class RetrieveQuery:
    image: bytes | None
    text: str | None
    top_k: int
    min_score: float | None  # None: the decision rule (retrieval/decision.py)


@dataclass(frozen=True)
class QueryPhoto:
    """A decoded query photo; ``scale`` maps its pixels to the uploaded photo's."""

    image: Image.Image
    scale: float = 1.0


@dataclass(frozen=True)
class Match:
    concept: ConceptSummary
    score: float
    source: Literal["image", "text"]
    box: Box | None = None  # where in the photo, in uploaded-photo pixels; None: the whole
    present: bool | None = None  # seen in the photo? None: no photo was sent
    threshold: float | None = None  # the score it needed (None: never by its photos)


def retrieve(
    services: Services,
    scope: UserScope,
    *,
    query: RetrieveQuery,
    timings: Timings | None = None,
) -> list[Match]:
    """Concepts seen in the photo (best first, top_k), then those named.

    Seen means: the decision rule says present, or, when ``min_score`` is set,
    the score reaches it. A concept named in the text is always included; its
    score is its similarity to the photo, or NAMED_ONLY_SCORE when no photo was sent.
    """
    if query.image is None and not query.text:
        raise InvalidRequest("send an image, a text, or both")
    timings = timings or Timings()
    photos = []
    if query.image is not None:
        with timings.stage("decode"):
            decoded = PhotoPolicy.for_retrieval(services, scope.tenant_id).decode(query.image)
        photos.append(QueryPhoto(decoded.image, scale=decoded.width / decoded.image.width))
    return find_matches(
        services,
        scope,
        photos=photos,
        text=query.text,
        top_k=query.top_k,
        min_score=query.min_score,
        timings=timings,
    )


def find_matches(
    services: Services,
    scope: UserScope,
    *,
    photos: Sequence[QueryPhoto],
    text: str | None,
    top_k: int,
    min_score: float | None,
    timings: Timings | None = None,
) -> list[Match]:
    """``retrieve`` for decoded photos: each is cut into regions (settings), all of them
    are encoded in one batch, and hits aggregate per concept with the box that matched.

    One query per call when the caches are warm: the user's version, which the
    cached index and concept summaries must match (writes by any process bump it).
    """
    timings = timings or Timings()
    with services.sessions() as session, timings.stage("db"):
        found = user_rows.user_version(
            session=session, tenant_id=scope.tenant_id, external_id=scope.external_user_id
        )
    if found is None:
        return []
    return matches_at(
        services,
        *found,
        photos=photos,
        text=text,
        top_k=top_k,
        min_score=min_score,
        timings=timings,
    ).matches


@dataclass(frozen=True)
class Found:
    """The matches of a query, and its photos' search (None without photos)."""

    matches: list[Match]
    search: PhotoSearch | None


def matches_at(
    services: Services,
    user_id: int,
    version: int,
    *,
    photos: Sequence[QueryPhoto],
    text: str | None,
    top_k: int,
    min_score: float | None,
    timings: Timings | None = None,
) -> Found:
    """``find_matches`` for a user whose row id and version the caller has just read,
    with the photos' search (for callers that show more of it, the playground)."""
    timings = timings or Timings()
    categories: list[str] = []
    if photos and services.settings.regions == "detector":
        with timings.stage("db"):
            categories = detector_categories(cached_concepts(services, user_id, version))
    scores: dict[str, tuple[float, Literal["image", "text"], Box | None]] = {}
    index = None
    vectors = None
    searched = None
    decide: Decide = _fixed(min_score)
    if photos:
        with timings.stage("search"):
            index = cached_index(services, user_id, version)
        settings = services.settings
        searched = search_photos(
            index,
            services.encoder,
            services.region_proposer,
            [photo.image for photo in photos],
            SearchOptions.of(settings.region_config(), settings.region_aggregation, categories),
            stage=timings.stage,
        )
        vectors = searched.vectors
        with timings.stage("search"):
            decide = decision_for(
                services,
                user_id,
                version,
                index,
                min_score,
                pooled=searched.pooled,
                vectors=searched.vectors,
            )
            for match in present_matches(searched.matches, decide, top_k=top_k):
                box = _scaled(match.box, photos[match.photo].scale)
                scores[match.label] = (match.score, "image", box)
    if not scores and not text:
        return Found([], searched)
    with timings.stage("db"):
        concepts = cached_concepts(services, user_id, version)
    if text:
        mentioned = named_in(text, [concept.name for concept in concepts.values()])
        named = [
            concept_id
            for concept_id, concept in concepts.items()
            if name_key(concept.name) in mentioned and concept_id not in scores
        ]
        visual = {}
        if index is not None and vectors is not None:
            visual = index.best_scores(vectors, named)
        for concept_id in named:
            score = visual.get(concept_id, 0.0) if vectors is not None else NAMED_ONLY_SCORE
            scores[concept_id] = (score, "text", None)
    # A concept deleted since the index was built is left out.
    matches = [
        Match(
            concepts[c],
            *hit,
            *(decide(c, hit[0]) if vectors is not None else (None, None)),
        )
        for c, hit in scores.items()
        if c in concepts
    ]
    matches.sort(key=lambda m: (m.source != "image", -m.score))
    return Found(matches, searched)


# (concept, score) -> (present, the score it needed)
Decide = Callable[[str, float], tuple[bool, float | None]]


def decision_for(
    services: Services,
    user_id: int,
    version: int,
    index: UserIndex,
    min_score: float | None,
    *,
    pooled: bool = False,
    vectors: np.ndarray | None = None,
) -> Decide:
    """How presence is decided: the fixed ``min_score`` when set, else the user's
    decision rule at ``version`` (retrieval/decision.py, fitted once per version), for
    vectors of crops or whole photos, or of regions ``pooled`` from one forward pass.
    ``vectors``: the query's, checked against the user's corrections (negatives) either
    way: a photo the user said is not a concept is not claimed, whatever the threshold."""
    rule = services.decisions.rule_for(
        services.index_key(user_id),
        version,
        index.vectors,
        services.background,
        corrections=lambda: _load_corrections(services, user_id),
    )
    if min_score is not None:
        return lambda label, score: (
            score >= min_score and (vectors is None or not rule.corrected(label, score, vectors)),
            min_score,
        )
    return lambda label, score: (
        rule.present(label, score, pooled=pooled, vectors=vectors),
        rule.threshold(label, pooled=pooled),
    )


def _load_corrections(services: Services, user_id: int) -> tuple[np.ndarray, list[str]]:
    with services.sessions() as session:
        return vector_rows.user_negatives(
            session=session, user_id=user_id, model_id=services.encoder.model_id
        )


def present_matches(
    matches: Sequence[RegionMatch], decide: Decide, *, top_k: int
) -> list[RegionMatch]:
    """The ``top_k`` first of ``matches`` (best first) that ``decide`` says are present."""
    return [match for match in matches if decide(match.label, match.score)[0]][:top_k]


def _fixed(min_score: float | None) -> Decide:
    """The caller's fixed threshold: present iff the score reaches it."""
    return lambda label, score: (min_score is not None and score >= min_score, min_score)


def _scaled(box: Box | None, scale: float) -> Box | None:
    if box is None:
        return None
    x0, y0, x1, y1 = (round(value * scale) for value in box)
    return (x0, y0, x1, y1)


def detector_categories(concepts: dict[str, ConceptSummary]) -> list[str]:
    """The distinct categories of the user's concepts ("dog", "mug"), for a detector's
    prompts: the category of the most concepts first, ties in alphabetical order, so a
    cap on the prompts (RAPPORT_REGION_DETECTOR_MAX_PROMPTS) drops the rarest ones."""
    words = (" ".join((c.category or "").split()).casefold() for c in concepts.values())
    counts = Counter(word for word in words if word)
    return sorted(counts, key=lambda word: (-counts[word], word))


def cached_concepts(services: Services, user_id: int, version: int) -> dict[str, ConceptSummary]:
    """The user's concepts at ``version``, from memory when cached, else from SQL."""

    def load() -> dict[str, ConceptSummary]:
        with services.sessions() as session:
            return concept_rows.concept_summaries(session=session, user_id=user_id)

    return services.concept_summary_cache.get(user_id, version, load)


def cached_index(services: Services, user_id: int, version: int) -> UserIndex:
    """The user's index at ``version``, from the cache when it is there, else from SQL."""
    return services.user_index_cache.get(
        services.index_key(user_id), version, lambda: _load_index(services, user_id)
    )


def _load_index(services: Services, user_id: int) -> UserIndex:
    with services.sessions() as session:
        ids, labels, matrix = vector_rows.user_vectors(
            session=session, user_id=user_id, model_id=services.encoder.model_id
        )
    index = UserIndex(services.encoder.dim)
    if ids:
        index.add(ids, labels, np.asarray(matrix))
    return index
