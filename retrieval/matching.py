"""From raw index hits and the question's words to the concepts of one query."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.index import Hit, UserIndex


def name_key(name: str) -> str:
    """The form under which a concept name is unique and found in text: "<Bo>" -> "bo"."""
    return " ".join(name.strip().strip("<>").split()).casefold()


def named_in(text: str, names: Iterable[str]) -> set[str]:
    """The name keys among ``names`` that ``text`` mentions, as "<bo>" or as the word "bo"."""
    folded = text.casefold()
    found = set()
    for name in names:
        key = name_key(name)
        if key and re.search(rf"(?<!\w)<?{re.escape(key)}>?(?!\w)", folded):
            found.add(key)
    return found


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
    index: UserIndex, queries: np.ndarray, *, top_k: int, min_score: float
) -> list[VisualMatch]:
    """The ``top_k`` labels whose best score over all queries is at least ``min_score``.

    Exact: the search widens until no vector left unseen could outrank the result.
    """
    size = len(index)
    if size == 0 or top_k <= 0:
        return []
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
