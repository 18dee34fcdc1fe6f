"""Which of a user's concepts a photo shows or a question names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from app import repository as repo
from app.db.models import Concept
from app.services import Services
from app.timing import Timings
from retrieval import UserIndex, decode_image, name_key, named_in
from retrieval.errors import InvalidRequest
from retrieval.matching import search_concepts

# A concept named in a question with no photo to compare against.
NAMED_ONLY_SCORE = 1.0


@dataclass(frozen=True)
class RetrieveQuery:
    image: bytes | None
    text: str | None
    top_k: int
    min_score: float


@dataclass(frozen=True)
class Match:
    concept: Concept
    score: float
    source: Literal["image", "text"]


def retrieve(
    services: Services,
    *,
    tenant_id: int,
    external_user_id: str,
    query: RetrieveQuery,
    timings: Timings | None = None,
) -> list[Match]:
    """Concepts seen in the photo (best first, top_k, above min_score), then those named.

    A concept named in the text is always included; its score is its similarity
    to the photo, or NAMED_ONLY_SCORE when no photo was sent.
    """
    if query.image is None and not query.text:
        raise InvalidRequest("send an image, a text, or both")
    timings = timings or Timings()
    images = []
    if query.image is not None:
        with timings.stage("decode"):
            limits, min_side = services.settings.image_limits(), services.encoder.input_size
            images.append(decode_image(query.image, limits, min_side=min_side).image)
    return find_matches(
        services,
        tenant_id=tenant_id,
        external_user_id=external_user_id,
        images=images,
        text=query.text,
        top_k=query.top_k,
        min_score=query.min_score,
        timings=timings,
    )


def find_matches(
    services: Services,
    *,
    tenant_id: int,
    external_user_id: str,
    images: Sequence[Image.Image],
    text: str | None,
    top_k: int,
    min_score: float,
    timings: Timings | None = None,
) -> list[Match]:
    """``retrieve`` for decoded photos: a concept's score is its best over all of them."""
    timings = timings or Timings()
    vectors = None
    if images:
        with timings.stage("encode"):
            vectors = services.encoder.encode_images(images)
    with services.sessions() as session:
        with timings.stage("db"):
            user = repo.find_user(
                session=session, tenant_id=tenant_id, external_id=external_user_id
            )
        if user is None:
            return []
        user_id, version = user.id, user.version
        scores: dict[str, tuple[float, Literal["image", "text"]]] = {}
        index = None
        if vectors is not None:
            with timings.stage("search"):
                index = services.user_index_cache.get(
                    services.index_key(user_id), version, lambda: _load_index(services, user_id)
                )
                for match in search_concepts(index, vectors, top_k=top_k, min_score=min_score):
                    scores[match.label] = (match.score, "image")
        if text:
            names = repo.concept_names(session=session, user_id=user_id)
            mentioned = named_in(text, names.values())
            named = [
                concept_id
                for concept_id, name in names.items()
                if name_key(name) in mentioned and concept_id not in scores
            ]
            visual = {}
            if index is not None and vectors is not None:
                visual = index.best_scores(vectors, named)
            for concept_id in named:
                score = visual.get(concept_id, 0.0) if vectors is not None else NAMED_ONLY_SCORE
                scores[concept_id] = (score, "text")
        with timings.stage("db"):
            concepts = repo.get_concepts(session=session, user_id=user_id, concept_ids=list(scores))
    matches = [Match(concept=c, score=scores[c.id][0], source=scores[c.id][1]) for c in concepts]
    matches.sort(key=lambda m: (m.source != "image", -m.score))
    return matches


def _load_index(services: Services, user_id: int) -> UserIndex:
    with services.sessions() as session:
        ids, labels, matrix = repo.user_vectors(
            session=session, user_id=user_id, model_id=services.encoder.model_id
        )
    index = UserIndex(services.encoder.dim)
    if ids:
        index.add(ids, labels, np.asarray(matrix))
    return index
