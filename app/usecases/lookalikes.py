"""Which other concept of the same user each concept looks like, from the user's own vectors.

A concept whose photos score at least the threshold against another concept's
photos would be retrieved for photos of that other concept too: the user should
add a distinguishing photo or description. The score is the best cosine
similarity between a photo of one and a photo of the other, as retrieval's own
scores are; the search is exact, over the user's cached index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from app.services import Services
from app.storage.repository.concepts import ConceptSummary
from app.usecases.retrieve import cached_concepts, cached_index, decision_for
from retrieval.index import UserIndex


@dataclass(frozen=True)
class LooksLike:
    """The other concept a concept looks like most, and how much (cosine similarity)."""

    concept_id: str
    name: str
    score: float


def threshold(services: Services) -> float | None:
    """The score from which a concept is flagged: the setting, else the default min_score;
    None: the other concept's own threshold under the decision rule."""
    value = services.settings.looks_like_min_score
    return services.default_min_score if value is None else value


def looks_like(
    services: Services, *, user_id: int, version: int, concept_ids: Iterable[str]
) -> dict[str, LooksLike]:
    """For each of ``concept_ids`` that looks like another of the user's concepts, that one.

    Costs one exact search of each concept's vectors against the user's index
    (as many vectors as the concept has photos), from the index cached at ``version``.
    """
    wanted = list(concept_ids)
    if not wanted:
        return {}
    index = cached_index(services, user_id, version)
    vectors = index.vectors_by_label(wanted)
    if not vectors:
        return {}
    names: dict[str, ConceptSummary] = cached_concepts(services, user_id, version)
    decide = decision_for(services, user_id, version, index, threshold(services))
    found = {}
    for concept_id, own in vectors.items():
        best = _best_other(index, concept_id, own)
        if best is not None and decide(*best)[0] and best[0] in names:
            found[concept_id] = LooksLike(best[0], names[best[0]].name, round(best[1], 6))
    return found


def _best_other(index: UserIndex, concept_id: str, own: np.ndarray) -> tuple[str, float] | None:
    # The k nearest of each own vector always include one of another concept once k
    # exceeds the concept's own count.
    rows = index.search(own, len(own) + 1)
    best: tuple[str, float] | None = None
    for row in rows:
        other = next((hit for hit in row if hit.label != concept_id), None)
        if other is not None and (best is None or other.score > best[1]):
            best = (other.label, other.score)
    return best
