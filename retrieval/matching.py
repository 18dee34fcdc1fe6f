"""From raw index hits to the concepts a query's photos show (names: retrieval/names.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.config import Aggregation
from retrieval.index import Hit, UserIndex


@dataclass(frozen=True)
class VisualMatch:
    label: str
    score: float
    region: int


def best_per_label(hits_per_region: Sequence[Sequence[Hit]]) -> dict[str, VisualMatch]:
    """Aggregate hits of every region: each label keeps its best score and region."""
    best: dict[str, VisualMatch] = {}
    for region, hits in enumerate(hits_per_region):
        for hit in hits:
            current = best.get(hit.label)
            if current is None or hit.score > current.score:
                best[hit.label] = VisualMatch(label=hit.label, score=hit.score, region=region)
    return best


def search_concepts(
    index: UserIndex,
    queries: np.ndarray,
    *,
    top_k: int,
    min_score: float,
    aggregation: Aggregation = "best",
) -> list[VisualMatch]:
    """The ``top_k`` labels scoring at least ``min_score``, best first.

    ``"best"``: a label's score is its best over all queries (exact: the search
    widens until no vector left unseen could outrank the result). ``"winner"``:
    each query (a region of a photo) counts only for the label it matches best,
    so that a region showing one concept does not push its look-alikes ahead of
    a concept that another region shows.
    """
    size = len(index)
    if size == 0 or top_k <= 0:
        return []
    if aggregation == "winner":
        winners = best_per_label(index.search(queries, 1)).values()
        ranked = sorted((m for m in winners if m.score >= min_score), key=lambda m: -m.score)
        return ranked[:top_k]
    k = min(size, max(16, top_k * 4))
    while True:
        rows = index.search(queries, k)
        ranked = sorted(
            (m for m in best_per_label(rows).values() if m.score >= min_score),
            key=lambda match: -match.score,
        )
        # A label not seen yet scores at most the k-th score of some full row.
        bound = max((row[-1].score for row in rows if len(row) == k), default=-np.inf)
        if (
            k >= size
            or bound < min_score
            or (len(ranked) >= top_k and ranked[top_k - 1].score >= bound)
        ):
            return ranked[:top_k]
        k = min(size, k * 4)
