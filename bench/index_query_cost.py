"""What one user's index costs per query, by size: the label view against the former code.

    python bench/index_query_cost.py [--dim 512] [--rounds 15]

Library level, no HTTP, random unit vectors; users of 20 x 5, 100 x 50 and 1,000 x 50
(concepts x photos; the last is the default caps). Timed in one process, the former
code and today's interleaved round by round:

- whole photo: ``search_concepts`` of one query over every concept, as ``search_photos``
  asks for one region (``top_k`` = every vector);
- 10 regions: the winner search of 10 region vectors (``aggregation="winner"``);
- refit: the decision rule's refit after a write, ``index.vectors()`` then
  ``fit_decision`` (the vectors' read alone in its own column);
- first query after a write (today's only): the whole-photo search that builds the view.

The former code is kept here only (``Former``, ``former_*``): a copy of the index's
reads before the label view (one Python object per hit, one ``reconstruct`` per
vector) and of the search it served. Both answers are compared before timing. One
request at a time, BLAS held to one thread as the service runs. Needs the machine to
itself.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import conditions, median

from retrieval.background import BACKGROUND_COUNT
from retrieval.decision import fit_decision
from retrieval.index import Hit, UserIndex
from retrieval.matching import WINNER_CANDIDATES, VisualMatch, best_per_label, search_concepts

SIZES = ((20, 5), (100, 50), (1000, 50))
REGIONS = 10


class Former:
    """The reads of ``UserIndex`` before the label view, over the same vectors."""

    def __init__(self, dim: int, ids: list[int], labels: list[str], vectors: np.ndarray) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self.labels = dict(zip(ids, labels, strict=True))

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        k = min(k, len(self.labels))
        scores, ids = self.index.search(queries, k)
        labels = dict(self.labels)
        return [
            [
                Hit(vector_id=int(vector_id), label=labels[int(vector_id)], score=float(score))
                for score, vector_id in zip(row_scores, row_ids, strict=True)
                if vector_id >= 0
            ]
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def vectors_by_label(self, labels: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = set(labels)
        ids: dict[str, list[int]] = {}
        for vector_id, label in self.labels.items():
            if label in wanted:
                ids.setdefault(label, []).append(vector_id)
        return {
            label: np.stack([self.index.reconstruct(vector_id) for vector_id in vector_ids])
            for label, vector_ids in ids.items()
        }

    def vectors(self) -> tuple[np.ndarray, list[str]]:
        ids = sorted(self.labels)
        labels = [self.labels[vector_id] for vector_id in ids]
        rows = [self.index.reconstruct(vector_id) for vector_id in ids]
        return np.stack(rows), labels


def former_best(index: Former, queries: np.ndarray, top_k: int) -> list[VisualMatch]:
    """``search_concepts(..., min_score=-inf)`` as it was: widen until exact, per hit."""
    size = len(index)
    k = min(size, max(16, top_k * 4))
    while True:
        rows = index.search(queries, k)
        ranked = sorted(best_per_label(rows).values(), key=lambda match: -match.score)
        bound = max((row[-1].score for row in rows if len(row) == k), default=-np.inf)
        if k >= size or (len(ranked) >= top_k and ranked[top_k - 1].score >= bound):
            return ranked[:top_k]
        k = min(size, k * 4)


def former_winners(index: Former, queries: np.ndarray) -> list[VisualMatch]:
    """``search_concepts(..., aggregation="winner")`` as it was: centroids per query."""
    rows = index.search(queries, WINNER_CANDIDATES)
    photos = index.vectors_by_label({hit.label for row in rows for hit in row})
    names = list(photos)
    best = np.stack([(queries @ photos[name].T).max(axis=1) for name in names], axis=1)
    sums = np.stack([photos[name].sum(axis=0, dtype=np.float64) for name in names])
    centroids = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )
    won = (best + queries @ centroids.T).argmax(axis=1)
    kept: dict[str, VisualMatch] = {}
    for row, code in enumerate(won):
        match = VisualMatch(label=names[code], score=float(best[row, code]), region=row)
        if match.label not in kept or match.score > kept[match.label].score:
            kept[match.label] = match
    return sorted(kept.values(), key=lambda m: -m.score)


def unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def same(got: list[VisualMatch], expected: list[VisualMatch]) -> bool:
    return [(m.label, m.region) for m in got] == [(m.label, m.region) for m in expected] and all(
        abs(a.score - b.score) < 1e-5 for a, b in zip(got, expected, strict=True)
    )


def measure(dim: int, concepts: int, photos: int, rounds: int) -> None:
    rng = np.random.default_rng(concepts)
    size = concepts * photos
    vectors = unit(size, dim, rng)
    # Photos of one concept were added together; ids in the order they were added.
    labels = [f"c{i // photos}" for i in range(size)]
    ids = list(range(1, size + 1))
    index = UserIndex(dim)
    index.add(ids, labels, vectors)
    former = Former(dim, ids, labels, vectors)
    background = unit(BACKGROUND_COUNT, dim, rng)
    one = unit(rounds, dim, rng)
    regions = [unit(REGIONS, dim, rng) for _ in range(rounds)]

    def whole(n: int) -> list[VisualMatch]:
        return search_concepts(index, one[n : n + 1], top_k=size, min_score=-math.inf)

    def winners(n: int) -> list[VisualMatch]:
        return search_concepts(
            index, regions[n], top_k=size, min_score=-math.inf, aggregation="winner"
        )

    assert same(whole(0), former_best(former, one[:1], size)), "whole photo differs"
    assert same(winners(0), former_winners(former, regions[0])), "winner search differs"
    (matrix, names), (old_matrix, old_names) = index.vectors(), former.vectors()
    assert names == old_names and np.array_equal(matrix, old_matrix), "vectors differ"

    times: dict[str, list[float]] = {}

    def timed(name: str, call: Callable[[], object]) -> None:
        times.setdefault(name, []).append(seconds(call))

    for n in range(rounds):
        timed("whole old", partial(former_best, former, one[n : n + 1], size))
        timed("whole new", partial(whole, n))
        timed("regions old", partial(former_winners, former, regions[n]))
        timed("regions new", partial(winners, n))
        timed("read old", former.vectors)
        timed("read new", index.vectors)
        timed("refit old", lambda: fit_decision(*former.vectors(), background))
        timed("refit new", lambda: fit_decision(*index.vectors(), background))
        # A write (here one photo out and back) drops the view; the next query builds it.
        index.remove([ids[n]])
        index.add([ids[n]], [labels[n]], vectors[n : n + 1])
        timed("first after write", partial(whole, n))

    def ms(name: str) -> float:
        return median(times[name]) * 1e3

    row = f"{f'{concepts} x {photos}':>10} {size:>7}"
    for task in ("whole", "regions", "refit", "read"):
        old, new = ms(f"{task} old"), ms(f"{task} new")
        row += f" {old:>11.2f} {new:>11.2f} {old / new:>6.1f}x"
    print(f"{row} {ms('first after write'):>15.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    threadpool_limits(limits=1, user_api="blas")  # as the service runs (app/main.py)
    print(
        "# "
        + conditions(
            dim=args.dim,
            blas_threads=1,
            faiss_omp_threads=faiss.omp_get_max_threads(),
            usable_cores=len(os.sched_getaffinity(0)),
            request_threads=1,
            load_average=" ".join(f"{x:.1f}" for x in os.getloadavg()),
        )
    )
    print(
        f"# median ms of {args.rounds} rounds, former code and today's interleaved; "
        f"{REGIONS} regions; refit = vectors read + fit_decision "
        f"({BACKGROUND_COUNT} background vectors)"
    )
    header = f"{'concepts':>10} {'vectors':>7}"
    for task in ("whole", "regions", "refit", "read"):
        header += f" {task + ' old':>11} {task + ' new':>11} {'ratio':>7}"
    print(f"{header} {'1st after write':>15}")
    for concepts, photos in SIZES:
        measure(args.dim, concepts, photos, args.rounds)


if __name__ == "__main__":
    main()
