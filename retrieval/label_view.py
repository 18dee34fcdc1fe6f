"""A user index's vectors grouped by label: each label's best score in one matrix product.

``UserIndex.search`` answers with one Python object per hit, so asking it for every
label's best score costs an object per vector. A ``LabelView`` keeps the order that
groups the index's rows by label, so that the same answer is one matrix product and a
maximum per group. It holds row numbers, never vectors: it describes one state of the
index (rebuilt after any write) and reads the matrix it is handed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Words of a row hashed to find candidate equal rows (all of a shorter row).
_SAMPLED_WORDS = 16
_HASH_WEIGHTS = np.random.default_rng(0).integers(1, 2**63, _SAMPLED_WORDS, dtype=np.uint64) | 1


@dataclass(frozen=True)
class LabelScores:
    """Each label's best score for each query, over all the label's vectors (exact).

    ``scores[q, j]`` is the best score of ``labels[j]`` for query ``q``; ``labels`` are
    in the order of their first vector in the index. ``listed[j]`` is where
    ``UserIndex.search`` first lists ``labels[j]`` among the first query's hits, as a
    rank among these labels (best score first; equal scores latest stored first, as
    FAISS lists them). ``centroids``, when asked for: each label's normalised mean.
    """

    labels: list[str]
    scores: np.ndarray
    listed: np.ndarray
    centroids: np.ndarray | None = None


class LabelView:
    """The rows of one index matrix (in storage order), grouped by label."""

    def __init__(self, row_labels: Sequence[str], matrix: np.ndarray) -> None:
        code_of: dict[str, int] = {}
        self._codes = np.fromiter(
            (code_of.setdefault(label, len(code_of)) for label in row_labels),
            dtype=np.intp,
            count=len(row_labels),
        )
        self.labels = list(code_of)
        self._code_of = code_of
        # Each label's rows together, in storage order within the label.
        self._grouped = np.argsort(self._codes, kind="stable")
        self._starts = np.concatenate(([0], np.cumsum(np.bincount(self._codes))))
        self._same = _first_equal_rows(matrix)

    def scores(
        self,
        matrix: np.ndarray,
        queries: np.ndarray,
        labels: Iterable[str] | None = None,
        *,
        among: int | None = None,
        centroids: bool = False,
    ) -> LabelScores:
        """``LabelScores`` for ``queries`` of ``labels`` (those the view has; None: all),
        or with ``among``, of the labels of each query's ``among`` best rows (at equal
        scores the earliest stored, as FAISS keeps them)."""
        if labels is not None:
            codes = np.array(
                sorted(self._code_of[label] for label in set(labels) if label in self._code_of),
                dtype=np.intp,
            )
            rows, starts, sizes = self._rows_of(codes)
            scores = _products(queries, matrix, rows, self._same)
        else:
            every = _products(queries, matrix, None, self._same)
            if among is None:
                codes = np.arange(len(self.labels))
            else:
                codes = np.unique(self._codes[_best_columns(every, among).any(axis=0)])
            rows, starts, sizes = self._rows_of(codes)
            scores = every[:, rows]
        names = [self.labels[c] for c in codes]
        if not len(rows) or not len(queries):
            empty = np.zeros((len(queries), len(codes)), np.float32)
            return LabelScores(names, empty, np.arange(len(codes)), None)
        best = np.maximum.reduceat(scores, starts, axis=1)
        # FAISS lists equal scores latest stored first: each label's latest row at its best.
        at_best = scores[0] == np.repeat(best[0], sizes)
        latest = np.maximum.reduceat(np.where(at_best, rows, -1), starts)
        listed = np.empty(len(codes), np.intp)
        listed[np.lexsort((-latest, -best[0]))] = np.arange(len(codes))
        means = _centroids(matrix, rows, starts) if centroids else None
        return LabelScores(names, best, listed, means)

    def vectors(self, matrix: np.ndarray, labels: Iterable[str]) -> dict[str, np.ndarray]:
        """The rows of each of ``labels`` that the view has (copies), in storage order."""
        codes = sorted(self._code_of[label] for label in set(labels) if label in self._code_of)
        return {
            self.labels[c]: matrix[self._grouped[self._starts[c] : self._starts[c + 1]]]
            for c in codes
        }

    def _rows_of(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows of ``codes``' labels, label after label, where each label's begin,
        and how many each has."""
        sizes = self._starts[codes + 1] - self._starts[codes]
        starts = np.cumsum(sizes) - sizes
        if len(codes) == len(self.labels):
            return self._grouped, starts, sizes
        groups = [self._grouped[self._starts[c] : self._starts[c + 1]] for c in codes]
        return np.concatenate([*groups, np.zeros(0, np.intp)]), starts, sizes


def _products(
    queries: np.ndarray, matrix: np.ndarray, rows: np.ndarray | None, same: np.ndarray | None
) -> np.ndarray:
    """``queries @ matrix[rows].T`` (None: every row), each distinct pair of a query and
    a row (``same``: each row's first equal row) computed once.

    BLAS may round the same dot product differently at another place in a matrix; a
    photo stored twice (or a region given twice) must tie with itself, as in FAISS.
    """
    if rows is None:
        products = queries @ matrix.T
        if same is not None:
            products = products[:, same]
    else:
        needed, columns = np.unique(rows if same is None else same[rows], return_inverse=True)
        products = (queries @ matrix[needed].T)[:, columns]
    same_query = _first_equal_rows(queries)
    return products if same_query is None else products[same_query]


def _best_columns(scores: np.ndarray, count: int) -> np.ndarray:
    """For each row, which of its columns are its ``count`` best (at equal scores the
    first columns, as FAISS keeps the earliest stored vectors)."""
    total = scores.shape[1]
    if count >= total:
        return np.ones(scores.shape, dtype=bool)
    last = np.partition(scores, total - count, axis=1)[:, total - count, None]
    above = scores > last
    tied = scores == last
    room = count - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


def _centroids(matrix: np.ndarray, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each group's normalised mean (summed in float64, row by row in storage order)."""
    ends = [*starts[1:], len(rows)]
    sums = np.stack(
        [matrix[rows[s:e]].sum(axis=0, dtype=np.float64) for s, e in zip(starts, ends, strict=True)]
    )
    norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return (sums / norms).astype(np.float32)


def _first_equal_rows(matrix: np.ndarray) -> np.ndarray | None:
    """For each row, the first row bitwise equal to it (itself if none); None: all differ.

    Rows whose sampled words hash alike are compared in full, so a collision of the hash
    only leaves two equal rows apart (ties then to the rounding of BLAS), never joins two
    different ones.
    """
    count, dim = matrix.shape
    if count < 2:
        return None
    words = np.ascontiguousarray(matrix, dtype=np.float32).view(np.uint32)
    sampled = words[:, np.linspace(0, dim - 1, min(dim, _SAMPLED_WORDS)).astype(np.intp)]
    keys = sampled.astype(np.uint64) @ _HASH_WEIGHTS[: sampled.shape[1]]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    same = first[inverse]
    moved = np.flatnonzero(same != np.arange(count))
    if not len(moved):
        return None
    differ = (words[moved] != words[same[moved]]).any(axis=1)
    same[moved[differ]] = moved[differ]
    return same if len(moved) > differ.sum() else None
