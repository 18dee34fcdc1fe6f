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


# Photos per region whose concepts may win it (see ``region_winners``).
WINNER_CANDIDATES = 16


def region_winners(
    index: UserIndex, queries: np.ndarray, candidates: int = WINNER_CANDIDATES
) -> list[VisualMatch]:
    """For each query (``region`` = its row), the label it matches best, scored by
    that label's best photo.

    "Best" is by the best photo's score plus the score of the label's centroid
    (the normalised mean of its photos), not by the best photo alone: a concept
    one of whose photos happens to resemble the region (a look-alike) no longer
    takes the region from the concept that all its photos resemble. Both terms
    are cosine similarities of the same model, so no constant is involved; a
    label with one photo counts it twice. (Chosen on the development half of the
    evaluation subjects: bench/RESULTS.md, "Third pass".) The contenders are the
    labels of every query's ``candidates`` best photos, each scored exactly over
    all its photos: one matrix product over the index, then work that grows with
    those labels' photos.
    """
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, index.dim)
    table = index.label_scores(queries, among=candidates, centroids=True)
    if table.centroids is None or not table.labels:
        return []
    best = table.scores
    won = (best + queries @ table.centroids.T).argmax(axis=1)
    return [
        VisualMatch(label=table.labels[code], score=float(best[row, code]), region=row)
        for row, code in enumerate(won)
    ]


def search_concepts(
    index: UserIndex,
    queries: np.ndarray,
    *,
    top_k: int,
    min_score: float,
    aggregation: Aggregation = "best",
) -> list[VisualMatch]:
    """The ``top_k`` labels scoring at least ``min_score``, best first.

    ``"best"``: a label's score is its best over all queries (exact: every vector is
    scored, in one matrix product), at the query that gives it; at equal scores the
    label stored first comes first.
    ``"winner"``: each query (a region of a photo) counts only for the label it
    matches best (``region_winners``), so that a region showing one concept does not
    push its look-alikes ahead of a concept that another region shows. Either way a
    label's score is the cosine similarity of its best photo.
    """
    if len(index) == 0 or top_k <= 0:
        return []
    if aggregation == "winner":
        kept: dict[str, VisualMatch] = {}
        for match in region_winners(index, queries):
            if match.label not in kept or match.score > kept[match.label].score:
                kept[match.label] = match
        ranked = sorted((m for m in kept.values() if m.score >= min_score), key=lambda m: -m.score)
        return ranked[:top_k]
    table = index.label_scores(queries)
    if not len(table.scores) or not table.labels:
        return []
    best = table.scores.max(axis=0)
    region = table.scores.argmax(axis=0)
    order = np.argsort(-best, kind="stable")  # labels are in the order they were stored
    chosen = order[best[order] >= min_score][:top_k]
    return [
        VisualMatch(label=table.labels[code], score=float(best[code]), region=int(region[code]))
        for code in chosen.tolist()
    ]
